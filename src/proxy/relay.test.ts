import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { createKeepAlive, ResponseSink } from './relay.ts';

describe('ResponseSink: an SSE answer complete before it is relayed', () => {
  const keepAlive = createKeepAlive(60_000);
  after(() => keepAlive.close());

  it('in several chunks, the watched answer in the first: sent whole, the answer watched once', async () => {
    const answer = '{"jsonrpc":"2.0","id":1,"result":{"content":[]}}';
    const chunks = [`event: message\ndata: ${answer}\n\n`, ': one\n\n', ': two\n\n', ': three\n\n'];
    const seen: string[] = [];
    let watching = true;
    const watcher = {
      watching: () => watching,
      data: (data: string) => {
        seen.push(data);
        watching = false;
      },
    };
    const server = createServer((_req, res) => {
      const sink = new ResponseSink(res, 200, { 'content-type': 'text/event-stream' }, { sse: true, keepAlive, watcher });
      sink.start(
        chunks.map((chunk) => Buffer.from(chunk)),
        true,
        () => {},
      );
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-length'), String(Buffer.byteLength(chunks.join(''))));
      assert.equal(await response.text(), chunks.join(''));
      assert.deepEqual(seen, [answer]);
    } finally {
      server.close();
    }
  });
});
