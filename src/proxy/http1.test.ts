import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChunkedDecoder, parseResponseHead } from './http1.ts';

/** Decodes a whole chunked body; the data, or the framing error. */
function decode(wire: string): string {
  const decoder = new ChunkedDecoder();
  const out: Buffer[] = [];
  decoder.read(Buffer.from(wire, 'latin1'), 0, (data) => {
    out.push(Buffer.from(data));
    return true;
  });
  if (decoder.error !== undefined) return `error: ${decoder.error}`;
  return decoder.done ? Buffer.concat(out).toString('latin1') : 'incomplete';
}

describe('chunk extensions (RFC 9112 §7.1.1: BWS then ";")', () => {
  const cases: [string, string, string][] = [
    ['plain', '5\r\nhello\r\n0\r\n\r\n', 'hello'],
    ['extension', '5;name=value\r\nhello\r\n0\r\n\r\n', 'hello'],
    ['whitespace before the extension', '5 \t;name="a\tb"\r\nhello\r\n0\r\n\r\n', 'hello'],
    ['a second number after whitespace', '5 5\r\nhello\r\n0\r\n\r\n', 'error: malformed chunk extension'],
    ['garbage after whitespace', '5 garbage\r\nhello\r\n0\r\n\r\n', 'error: malformed chunk extension'],
    ['control bytes in an extension', '5;a\x00\x01\r\nhello\r\n0\r\n\r\n', 'error: malformed chunk extension'],
  ];
  for (const [name, wire, expected] of cases) it(name, () => assert.equal(decode(wire), expected));
});

describe('Keep-Alive timeout hint', () => {
  const head = (keepAlive: string) => parseResponseHead(`HTTP/1.1 200 OK\r\ncontent-length: 0\r\nkeep-alive: ${keepAlive}\r\n`);
  const cases: [string, number | undefined][] = [
    ['timeout=5', 5],
    ['timeout=5, max=100', 5],
    ['max=100, Timeout=7', 7],
    ['timeout=3000000', 3600],
    ['xtimeout=9', undefined],
    ['timeout=-3', undefined],
    ['timeout=5s', undefined],
  ];
  for (const [value, expected] of cases) {
    it(value, () => {
      const parsed = head(value);
      assert.ok(typeof parsed !== 'string', String(parsed));
      assert.equal(parsed.keepAliveSeconds, expected);
    });
  }
});
