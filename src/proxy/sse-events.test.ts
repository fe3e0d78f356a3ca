import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SseEvents } from './sse-events.ts';

/** The data SseEvents hands on for `chunks`, and what each push returned. */
function read(chunks: (string | Buffer)[], watching: () => boolean = () => true, lasting = false): { data: string[]; pushed: boolean[] } {
  const data: string[] = [];
  const events = new SseEvents({ watching, data: (value) => data.push(value) }, lasting);
  const pushed = chunks.map((chunk) => events.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, 'utf8')));
  return { data, pushed };
}

/** Every way of cutting `text` in two (bytes, so inside a UTF-8 sequence too). */
function everySplit(text: string): Buffer[][] {
  const bytes = Buffer.from(text, 'utf8');
  const splits: Buffer[][] = [];
  for (let at = 0; at <= bytes.length; at++) splits.push([bytes.subarray(0, at), bytes.subarray(at)]);
  return splits;
}

describe('SSE events (WHATWG HTML §9.2.6)', () => {
  const answer = '{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"héllo ✓"}]}}';

  for (const [ending, name] of [
    ['\n', 'LF'],
    ['\r\n', 'CRLF'],
    ['\r', 'CR'],
  ] as const) {
    const stream = `event: message${ending}id: 7${ending}data: ${answer}${ending}${ending}`;
    it(`an event with ${name} line ends, cut at every byte, is one data`, () => {
      for (const chunks of everySplit(stream)) assert.deepEqual(read(chunks).data, [answer], JSON.stringify(chunks.map(String)));
    });
  }

  it('data lines join with LF; "data" alone is an empty line; one leading space is dropped', () => {
    const stream = 'data: first\ndata:second\ndata\ndata:  two spaces\n\n';
    assert.deepEqual(read([stream]).data, ['first\nsecond\n\n two spaces']);
  });

  it('comments, other fields and events without data are not handed on', () => {
    const stream = ': keep-alive\n\nevent: ping\nid: 3\n\ndatum: no\ndata-x: no\n\nretry: 10\ndata: yes\n\n';
    assert.deepEqual(read([stream]).data, ['yes']);
  });

  it('several events in one chunk, and an event not yet ended is kept for the next chunk', () => {
    assert.deepEqual(read(['data: a\n\ndata: b\n\ndata: c\n', '\n']).data, ['a', 'b', 'c']);
    assert.deepEqual(read(['data: a\n\ndata: b']).data, ['a']);
  });

  it('a CR ending one chunk and an LF opening the next are one line end', () => {
    assert.deepEqual(read(['data: a\r', '\n', 'data: b\r\n\r', '\ndata: c\r\n\r\n']).data, ['a\nb', 'c']);
  });

  it('a one-answer stream is read only while its watcher watches', () => {
    let watching = true;
    const data: string[] = [];
    const stopAfterOne = (value: string) => {
      data.push(value);
      watching = false;
    };
    const events = new SseEvents({ watching: () => watching, data: stopAfterOne });
    assert.equal(events.push(Buffer.from('data: 1\n\ndata: 2\n\n')), true);
    assert.equal(events.push(Buffer.from('data: 3\n\n')), false);
    assert.deepEqual(data, ['1']);
  });

  it('a lasting stream keeps delimiting while nobody watches, and hands on events once watched again', () => {
    let watching = false;
    const data: string[] = [];
    const events = new SseEvents({ watching: () => watching, data: (value) => data.push(value) }, true);
    assert.equal(events.push(Buffer.from('data: unseen\n\ndata: half')), true);
    watching = true;
    events.push(Buffer.from(' way\n\ndata: seen\n\n'));
    // An unwatched line is not decoded; a line that ends once watched is.
    assert.deepEqual(data, ['half way', 'seen']);
  });

  it('a byte order mark opening the stream is ignored, also cut across chunks; one later is data', () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const stream = Buffer.concat([bom, Buffer.from('data: a\n\ndata: \ufeffb\n\n')]);
    for (let at = 0; at <= stream.length; at++) assert.deepEqual(read([stream.subarray(0, at), stream.subarray(at)]).data, ['a', '\ufeffb'], `cut at ${at}`);
    assert.deepEqual(read([Buffer.concat([bom, Buffer.from('\ndata: c\n\n')])]).data, ['c']);
  });

  it('a large data line in many small chunks', () => {
    const big = JSON.stringify({ id: 2, result: { text: 'x'.repeat(200_000) } });
    const bytes = Buffer.from(`data: ${big}\n\n`);
    const chunks: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += 16_384) chunks.push(bytes.subarray(at, at + 16_384));
    assert.deepEqual(read(chunks).data, [big]);
  });
});
