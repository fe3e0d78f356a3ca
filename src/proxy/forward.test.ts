import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import { afterEach, describe, it } from 'node:test';
import { selfSignedCertificate } from '../../test/support/tls.ts';
import type { BackendConfig } from '../config/schema.ts';
import { type ProxyContext, sendBackendResponse } from './exchange.ts';
import { createKeepAlive } from './relay.ts';
import { GatewayError, TruncatedResponseError } from './errors.ts';
import { type BackendResponse, createForwarder, type Forwarder, WHOLE_BODY_BYTES } from './forward.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function forwarder(url: string, extra: Partial<BackendConfig> = {}): Forwarder {
  const backend: BackendConfig = {
    name: 'b',
    path: '/mcp',
    url,
    scopes: ['mcp:tools'],
    identityAssertion: { header: 'x-mcp-identity', ttlSeconds: 300 },
    connectTimeoutMs: 500,
    headersTimeoutMs: 150,
    maxBodyBytes: 1024,
    ...extra,
  };
  const created = createForwarder(backend);
  cleanups.push(() => created.close());
  return created;
}

interface Served {
  url: string;
  /** Connections accepted so far. */
  connections: number;
}

async function listen(server: Server, scheme = 'http', host = '127.0.0.1'): Promise<Served> {
  const sockets = new Set<Socket>();
  const served: Served = { url: '', connections: 0 };
  server.on(scheme === 'https' ? 'secureConnection' : 'connection', (socket: Socket) => {
    served.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  served.url = `${scheme}://${host}:${(server.address() as AddressInfo).port}/mcp`;
  return served;
}

/** A raw backend (node:net): `onRequest` gets each socket's first bytes; nothing is parsed for it. */
const rawBackend = (onRequest: (socket: Socket) => void) =>
  listen(
    createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => onRequest(socket));
    }),
  );

const post = (f: Forwarder, url: string, body?: Readable | Buffer, headers: Record<string, string> = {}) =>
  f.request({ url: new URL(url), method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: body ?? Buffer.from('{}') }).response;

async function text(response: BackendResponse): Promise<string> {
  if (Buffer.isBuffer(response.body)) return response.body.toString();
  const chunks: Buffer[] = [];
  for await (const chunk of response.body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

const failure = (status: number, message: string) => (error: unknown) => {
  assert.ok(error instanceof GatewayError, String(error));
  assert.deepEqual([error.status, error.message], [status, message]);
  return true;
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('forwarder: failures as the gateway answers them', () => {
  const cases: [string, () => Promise<Served>, (error: unknown) => boolean][] = [
    ['an unreachable backend is a 502', async () => {
      const served = await listen(createServer());
      await cleanups.pop()!();
      return served;
    }, failure(502, 'Bad Gateway: backend b is unreachable')],
    ['no head within headersTimeoutMs is a 504 naming the milliseconds', () => listen(createServer(() => {})),
      failure(504, 'Gateway Timeout: backend b did not answer within 150 ms')],
    ['an answer breaking HTTP/1.1 (Content-Length with chunked, RFC 9112 §6.3) is a 502 saying so', () =>
      rawBackend((socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n')),
      failure(502, 'Bad Gateway: backend b sent an invalid HTTP response')],
    ['a small answer cut short is a TruncatedResponseError', () => rawBackend((socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc')),
      (error) => error instanceof TruncatedResponseError],
  ];
  for (const [name, backend, check] of cases) {
    it(name, async () => {
      const { url } = await backend();
      await assert.rejects(post(forwarder(url), url), check);
    });
  }

  it('passes the request body’s own 413 through as it is', async () => {
    const { url } = await rawBackend((socket) => socket.resume());
    const tooLarge = new GatewayError(413, 'Payload Too Large: request body must not exceed 1024 bytes');
    const body = new Readable({ read() {} });
    body.push('{');
    const response = post(forwarder(url), url, body);
    setTimeout(() => body.destroy(tooLarge), 20);
    await assert.rejects(response, (error) => error === tooLarge);
  });

  it('a request body shorter than its Content-Length never completes at the backend: its connection is closed', async () => {
    let received = '';
    let closed!: Promise<unknown>;
    const { url } = await listen(
      createServer((socket) => {
        socket.on('error', () => {});
        socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
        closed = once(socket, 'close');
      }),
    );
    const body = Readable.from([Buffer.from('abc')]);
    await assert.rejects(post(forwarder(url), url, body, { 'content-length': '10' }));
    await closed;
    assert.match(received, /\r\ncontent-length: 10\r\n\r\nabc$/i, 'the three bytes, then the connection closed');
  });
});

describe('forwarder: connections', () => {
  it('a socket that receives bytes while idle is dropped, not reused: the next request gets its own answer', async () => {
    // A backend that answers, then writes a forged second response on the idle socket.
    const forged = 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{"evil":1}';
    const served = await listen(
      createServer((socket) => {
        socket.on('error', () => {});
        let first = true;
        socket.on('data', () => {
          if (!first) return void socket.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\r\n{"ok":2}');
          first = false;
          socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\r\n{"ok":1}');
          setTimeout(() => socket.write(forged), 30);
        });
      }),
    );
    const f = forwarder(served.url);
    assert.equal(await text(await post(f, served.url)), '{"ok":1}');
    await sleep(100);
    assert.equal(await text(await post(f, served.url)), '{"ok":1}');
    assert.equal(served.connections, 2, 'the second request went out on a new connection');
  });

  it('keeps a connection alive between calls', async () => {
    const served = await listen(createHttpServer((_req, res) => res.end('{"ok":1}')));
    const f = forwarder(served.url);
    for (let i = 0; i < 3; i++) {
      assert.equal(await text(await post(f, served.url)), '{"ok":1}');
      await sleep(10);
    }
    assert.equal(served.connections, 1);
  });

  it('sends SNI with the backend’s hostname over TLS (RFC 6066 §3), and refuses a certificate it does not trust', async () => {
    const { key, cert } = selfSignedCertificate();
    const servernames: string[] = [];
    const server = createTlsServer({
      key,
      cert,
      SNICallback: (servername, callback) => {
        servernames.push(servername);
        callback(null);
      },
    });
    server.on('tlsClientError', () => {});
    const served = await listen(server, 'https', 'localhost');
    await assert.rejects(post(forwarder(served.url), served.url), failure(502, "Bad Gateway: backend b's TLS certificate is not trusted (DEPTH_ZERO_SELF_SIGNED_CERT)"));
    assert.deepEqual(servernames, ['localhost']);
  });

  it('backends[].tls: trusts the configured CA (besides the system ones) and sends its servername as SNI', async () => {
    const { key, cert } = selfSignedCertificate();
    const servernames: string[] = [];
    const sni = (servername: string, callback: (error: null) => void) => {
      servernames.push(servername);
      callback(null);
    };
    const server = createHttpsServer({ key, cert, SNICallback: sni }, (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    server.on('tlsClientError', () => {});
    const served = await listen(server, 'https', 'localhost');
    assert.equal((await post(forwarder(served.url, { tls: { ca: cert } }), served.url)).statusCode, 200);
    await assert.rejects(
      post(forwarder(served.url, { tls: { ca: cert, servername: 'other.internal' } }), served.url),
      failure(502, "Bad Gateway: backend b's TLS certificate is not trusted (ERR_TLS_CERT_ALTNAME_INVALID)"),
    );
    assert.deepEqual(servernames, ['localhost', 'other.internal']);
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
      const { url } = await listen(createHttpServer((_req, res) => res.writeHead(200, { ...headers, 'content-length': body.length }).end(body)));
      const response: BackendResponse = await post(forwarder(url), url);
      assert.equal(Buffer.isBuffer(response.body), whole);
      assert.equal(await text(response), body);
    });
  }

  it('a backend that dies mid-stream: the pending request id gets a JSON-RPC error event and the stream ends', async () => {
    const { url } = await rawBackend((socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n');
      const event = 'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\n\n';
      socket.write(`${event.length.toString(16)}\r\n${event}\r\n`);
      setTimeout(() => socket.destroy(), 30);
    });
    const f = forwarder(url);
    const requestBody = Buffer.from('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}');
    const keepAlive = createKeepAlive(10_000);
    cleanups.push(async () => keepAlive.close());
    const ctx = { keepAlive } as unknown as ProxyContext;
    const { url: front } = await listen(
      createHttpServer((_req: IncomingMessage, res: ServerResponse) => {
        void post(f, url, requestBody).then((response) => sendBackendResponse(ctx, res, response, { requestBody }));
      }) as unknown as Server,
    );
    const answer = await fetch(front, { method: 'POST' });
    assert.equal(
      await answer.text(),
      'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\n\n' +
        'event: message\ndata: {"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Gateway: the backend stream ended before the response"},"id":7}\n\n',
    );
  });
});
