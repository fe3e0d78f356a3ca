import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, it } from 'node:test';
import type { BackendConfig } from '../config/schema.ts';
import { type BackendResponse, createForwarder, type Forwarder, GatewayError, TruncatedResponseError, WHOLE_BODY_BYTES } from './forward.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function forwarder(url: string): Forwarder {
  const backend: BackendConfig = {
    name: 'b',
    path: '/mcp',
    url,
    scopes: ['mcp:tools'],
    identityAssertion: { header: 'x-mcp-identity', ttlSeconds: 300 },
    connectTimeoutMs: 500,
    headersTimeoutMs: 150,
    maxBodyBytes: 1024,
  };
  const created = createForwarder(backend);
  cleanups.push(() => created.close());
  return created;
}

async function listen(server: Server): Promise<string> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
}

/** A backend answering every request with these bytes (and then ending, if `end`). */
const rawBackend = (answer: string, end = false) =>
  listen(
    createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => (end ? socket.end(answer) : socket.write(answer)));
    }),
  );

const post = (f: Forwarder, url: string, body?: Readable | Buffer) =>
  f.request({ url: new URL(url), method: 'POST', headers: { 'content-type': 'application/json' }, body: body ?? Buffer.from('{}') }).response;

const failure = (status: number, message: string) => (error: unknown) => {
  assert.ok(error instanceof GatewayError, String(error));
  assert.deepEqual([error.status, error.message], [status, message]);
  return true;
};

describe('forwarder: failures as the gateway answers them', () => {
  const cases: [string, () => Promise<string>, (error: unknown) => boolean][] = [
    ['an unreachable backend is a 502', async () => {
      const url = await listen(createServer());
      await cleanups.pop()!();
      return url;
    }, failure(502, 'Bad Gateway: backend b is unreachable')],
    ['no head within headersTimeoutMs is a 504 naming the milliseconds', () => listen(createServer(() => {})),
      failure(504, 'Gateway Timeout: backend b did not answer within 150 ms')],
    ['an answer breaking HTTP/1.1 is a 502', () => rawBackend('HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n'),
      failure(502, 'Bad Gateway: backend b is unreachable')],
    ['a small answer cut short is a TruncatedResponseError', () => rawBackend('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc', true),
      (error) => error instanceof TruncatedResponseError],
  ];
  for (const [name, backend, check] of cases) {
    it(name, async () => {
      const url = await backend();
      await assert.rejects(post(forwarder(url), url), check);
    });
  }

  it('passes the request body’s own 413 through as it is', async () => {
    const url = await listen(createServer((socket) => socket.resume()));
    const tooLarge = new GatewayError(413, 'Payload Too Large: request body must not exceed 1024 bytes');
    const body = new Readable({ read() {} });
    const response = post(forwarder(url), url, body);
    setTimeout(() => body.destroy(tooLarge), 20);
    await assert.rejects(response, (error) => error === tooLarge);
  });
});

describe('forwarder: whole or streamed answers', () => {
  const cases: [string, Record<string, string | number>, string, boolean][] = [
    ['a small JSON answer is one Buffer', { 'content-type': 'application/json' }, '{"ok":1}', true],
    ['SSE streams even when small', { 'content-type': 'text/event-stream' }, 'data: 1\n\n', false],
    ['an answer over WHOLE_BODY_BYTES streams', { 'content-type': 'application/json' }, 'x'.repeat(WHOLE_BODY_BYTES + 1), false],
  ];
  for (const [name, headers, body, whole] of cases) {
    it(name, async () => {
      const url = await listen(createHttpServer((_req, res) => res.writeHead(200, { ...headers, 'content-length': body.length }).end(body)));
      const response: BackendResponse = await post(forwarder(url), url);
      assert.equal(Buffer.isBuffer(response.body), whole);
      const chunks: Buffer[] = [];
      for await (const chunk of Buffer.isBuffer(response.body) ? [response.body] : response.body) chunks.push(chunk as Buffer);
      assert.equal(Buffer.concat(chunks).toString(), body);
    });
  }
});
