import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type RequestListener } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { selfSignedCertificate } from '../../test/support/tls.ts';
import { type BackendClient, type BackendClientOptions, type ClientResponse, createBackendClient } from './backend-client.ts';
import { BackendClientError } from './backend-connection.ts';
import { isEventStream, WHOLE_BODY_BYTES } from './forward.ts';

/** Everything a test opened, closed after it. */
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function client(options: Partial<BackendClientOptions> = {}): BackendClient {
  const created = createBackendClient({
    connectTimeoutMs: 1000,
    headersTimeoutMs: 2000,
    collectWhole: (headers, length) => length <= WHOLE_BODY_BYTES && !isEventStream(headers['content-type']),
    ...options,
  });
  cleanups.push(() => created.close());
  return created;
}

interface Served {
  url: string;
  /** Connections accepted so far, and those the peer (the client) closed. */
  connections: number;
  closed: number;
}

async function listen(server: Server, served: Served, protocol = 'http'): Promise<Served> {
  const sockets = new Set<Socket>();
  server.on(protocol === 'https' ? 'secureConnection' : 'connection', (socket: Socket) => {
    served.connections++;
    sockets.add(socket);
    socket.on('close', () => {
      served.closed++;
      sockets.delete(socket);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  served.url = `${protocol}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return served;
}

function httpServer(handler: RequestListener): Promise<Served> {
  return listen(createServer(handler), { url: '', connections: 0, closed: 0 });
}

/** A server that answers each request head (bodies ignored) with hand-written bytes. */
function rawServer(respond: (socket: Socket, head: string) => void): Promise<Served> {
  const server = createNetServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    let buffered = '';
    socket.on('data', (data) => {
      buffered += data.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
        const head = buffered.slice(0, end + 4);
        buffered = buffered.slice(end + 4);
        respond(socket, head);
      }
    });
  });
  return listen(server, { url: '', connections: 0, closed: 0 });
}

const get = (c: BackendClient, url: string, path = '/', method = 'GET') =>
  c.request({ url: new URL(path, url), method, headers: {} }).response;

async function text(body: Buffer | Readable): Promise<string> {
  if (Buffer.isBuffer(body)) return body.toString('latin1');
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('latin1');
}

async function rejectsWith(promise: Promise<unknown>, reason: BackendClientError['reason']): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof BackendClientError, String(error));
    assert.equal(error.reason, reason, error.message);
    return true;
  });
}

async function readRequest(req: IncomingMessage): Promise<{ headers: IncomingMessage['headers']; body: string }> {
  return { headers: req.headers, body: await text(req) };
}

describe('backend client: requests', () => {
  it('sends a Buffer body with its length and answers small bodies whole', async () => {
    let seen: Awaited<ReturnType<typeof readRequest>> | undefined;
    const served = await httpServer(async (req, res) => {
      seen = await readRequest(req);
      res.setHeader('x-dup', ['a', 'b']);
      res.setHeader('content-type', 'application/json');
      res.end('{"ok":true}');
    });
    const c = client();
    const response = await c.request({
      url: new URL('/mcp?x=1', served.url),
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': '999', 'x-token': 'a'.repeat(600) },
      body: Buffer.from('{"jsonrpc":"2.0"}'),
    }).response;
    assert.equal(response.statusCode, 200);
    assert.ok(Buffer.isBuffer(response.body));
    assert.equal(response.body.toString(), '{"ok":true}');
    assert.deepEqual(response.headers['x-dup'], ['a', 'b']);
    assert.equal(response.headers['content-type'], 'application/json');
    assert.equal(seen?.body, '{"jsonrpc":"2.0"}');
    assert.equal(seen?.headers['content-length'], '17', 'the body length, not the caller’s');
    assert.equal(seen?.headers.host, new URL(served.url).host);
    assert.equal(seen?.headers['x-token'], 'a'.repeat(600));
  });

  const framings: [string, string, Record<string, string>, (() => Readable) | undefined, Record<string, string | undefined>][] = [
    ['a stream with Content-Length is sent as is', 'POST', { 'content-length': '6' }, () => Readable.from([Buffer.from('ab'), Buffer.from('cdef')]), { 'content-length': '6', 'transfer-encoding': undefined }],
    ['a stream without length is chunked', 'POST', {}, () => Readable.from([Buffer.from('ab'), Buffer.alloc(0), Buffer.from('cdef')]), { 'content-length': undefined, 'transfer-encoding': 'chunked' }],
    ['a POST without body says Content-Length: 0', 'POST', {}, undefined, { 'content-length': '0', 'transfer-encoding': undefined }],
    ['a GET has no body framing', 'GET', { 'content-length': '5' }, undefined, { 'content-length': undefined, 'transfer-encoding': undefined }],
  ];
  for (const [name, method, headers, body, expected] of framings) {
    it(name, async () => {
      let seen: Awaited<ReturnType<typeof readRequest>> | undefined;
      const served = await httpServer(async (req, res) => {
        seen = await readRequest(req);
        res.end('done');
      });
      const response = await client().request({ url: new URL('/', served.url), method, headers, body: body?.() }).response;
      assert.equal(await text(response.body), 'done');
      for (const [header, value] of Object.entries(expected)) assert.equal(seen?.headers[header], value, header);
      assert.equal(seen?.body, body ? 'abcdef' : '');
    });
  }

  const refused: [string, string, Record<string, string>][] = [
    ['CR LF in a value', 'GET', { 'x-a': 'v\r\nx-injected: 1' }],
    ['a bare LF in a value', 'GET', { 'x-a': 'v\nx' }],
    ['NUL in a value', 'GET', { 'x-a': 'v\0' }],
    ['a character beyond latin1 (U+010A would be written as LF)', 'GET', { 'x-a': 'v\u010a' }],
    ['a space in a name', 'GET', { 'x a': 'v' }],
    ['an empty name', 'GET', { '': 'v' }],
    ['a method that is not a token', 'GET /evil HTTP/1.1\r\n', {}],
  ];
  for (const [name, method, headers] of refused) {
    it(`refuses to send ${name}`, async () => {
      const served = await httpServer((_req, res) => res.end());
      await rejectsWith(client().request({ url: new URL('/', served.url), method, headers }).response, 'request');
      assert.equal(served.connections, 0);
    });
  }

  it('passes the request body stream’s own error (413) through, and drops the socket', async () => {
    const served = await httpServer((req) => req.resume());
    const tooLarge = new Error('Payload Too Large');
    const body = new Readable({ read() {} });
    const exchange = client().request({ url: new URL('/', served.url), method: 'POST', headers: {}, body });
    body.push('partial');
    setTimeout(() => body.destroy(tooLarge), 50);
    await assert.rejects(exchange.response, (error) => error === tooLarge);
    await waitFor(() => served.closed === 1);
  });

  it('refuses a stream body longer than its declared Content-Length (it would be a second request)', async () => {
    const served = await httpServer((req) => req.resume());
    const body = Readable.from([Buffer.from('abc'), Buffer.from('def')]);
    await rejectsWith(client().request({ url: new URL('/', served.url), method: 'POST', headers: { 'content-length': '4' }, body }).response, 'request');
  });
});

/** Responses written byte for byte, and what the client makes of them. */
const CHUNKED = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n1 ; x\r\n,\r\n006\r\n world\r\n0\r\nx-trailer: t\r\nx-other: u\r\n\r\n';

describe('backend client: responses (RFC 9112)', () => {
  it('decodes a chunked body with extensions and trailers sent one byte per packet, then reuses the socket', async () => {
    const served = await rawServer((socket) => {
      void (async () => {
        for (const byte of Buffer.from(CHUNKED, 'latin1')) {
          socket.write(Buffer.from([byte]));
          await sleep(1);
        }
      })();
    });
    const c = client();
    const response = await get(c, served.url);
    assert.ok(!Buffer.isBuffer(response.body), 'chunked answers stream');
    assert.equal(await text(response.body), 'hello, world');
    assert.equal(await text((await get(c, served.url)).body), 'hello, world');
    assert.equal(served.connections, 1);
  });

  it('decodes a chunked answer split in two at every byte boundary', async () => {
    const bytes = Buffer.from(CHUNKED, 'latin1');
    let split = 0;
    const served = await rawServer((socket) => {
      socket.write(bytes.subarray(0, split));
      setTimeout(() => socket.write(bytes.subarray(split)), 2);
    });
    const c = client();
    for (split = 1; split < bytes.length; split++) {
      assert.equal(await text((await get(c, served.url)).body), 'hello, world', `split at ${split}`);
    }
    assert.equal(served.connections, 1);
  });

  const answers: [string, string, string, Partial<ClientResponse> & { text?: string; reused?: boolean }][] = [
    ['interim 1xx answers are skipped', 'GET', 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok', { statusCode: 200, text: 'ok', reused: true }],
    ['a repeated identical Content-Length is one length', 'GET', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok', { text: 'ok', reused: true }],
    ['a status line without reason phrase', 'GET', 'HTTP/1.1 201\r\ncontent-length: 0\r\n\r\n', { statusCode: 201, text: '', reused: true }],
    ['204 has no body', 'GET', 'HTTP/1.1 204 No Content\r\n\r\n', { statusCode: 204, text: '', reused: true }],
    ['HEAD answers have no body whatever Content-Length says', 'HEAD', 'HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n', { text: '', reused: true }],
    ['HTTP/1.0 answers are not reused', 'GET', 'HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok', { text: 'ok', reused: false }],
    ['Connection: close is honoured', 'GET', 'HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\ncontent-length: 2\r\n\r\nok', { text: 'ok', reused: false }],
    ['Keep-Alive: timeout=1 leaves no time to reuse', 'GET', 'HTTP/1.1 200 OK\r\nkeep-alive: timeout=1\r\ncontent-length: 2\r\n\r\nok', { text: 'ok', reused: false }],
  ];
  for (const [name, method, answer, expected] of answers) {
    it(name, async () => {
      const served = await rawServer((socket) => socket.write(answer));
      const c = client();
      for (let i = 0; i < 2; i++) {
        const response = await get(c, served.url, '/', method);
        if (expected.statusCode !== undefined) assert.equal(response.statusCode, expected.statusCode);
        assert.equal(await text(response.body), expected.text);
      }
      assert.equal(served.connections, expected.reused ? 1 : 2);
    });
  }

  it('reads a body delimited by the connection’s end, and does not reuse it', async () => {
    const served = await rawServer((socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end'));
    const c = client();
    assert.equal(await text((await get(c, served.url)).body), 'until the end');
    assert.equal(await text((await get(c, served.url)).body), 'until the end');
    assert.equal(served.connections, 2);
  });

  const refusedAnswers: [string, string][] = [
    ['Transfer-Encoding with Content-Length (§6.3 rule 3)', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n'],
    ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok'],
    ['a list of different Content-Lengths', 'HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok'],
    ['a negative Content-Length', 'HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n'],
    ['a non-numeric Content-Length', 'HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n'],
    ['a coding other than chunked', 'HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nx-a: one\r\n two\r\ncontent-length: 0\r\n\r\n'],
    ['whitespace before the colon', 'HTTP/1.1 200 OK\r\ncontent-length : 0\r\n\r\n'],
    ['a bare LF inside the head', 'HTTP/1.1 200 OK\r\nx-a: 1\nx-b: 2\r\ncontent-length: 0\r\n\r\n'],
    ['a NUL in a value', 'HTTP/1.1 200 OK\r\nx-a: 1\0\r\ncontent-length: 0\r\n\r\n'],
    ['a malformed status line', 'HTTP/1.1 20 OK\r\ncontent-length: 0\r\n\r\n'],
    ['HTTP/2 on the wire', 'HTTP/2.0 200 OK\r\ncontent-length: 0\r\n\r\n'],
    ['101 Switching Protocols', 'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n'],
    ['a head over 64 KiB', `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(64 * 1024)}\r\ncontent-length: 0\r\n\r\n`],
  ];
  for (const [name, answer] of refusedAnswers) {
    it(`refuses ${name}`, async () => {
      const served = await rawServer((socket) => socket.write(answer));
      await rejectsWith(get(client(), served.url), 'protocol');
      await waitFor(() => served.closed === 1);
    });
  }

  it('refuses a head over 64 KiB that never ends, without waiting for it', async () => {
    const served = await rawServer((socket) => socket.write(`HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(70 * 1024)}`));
    await rejectsWith(get(client(), served.url), 'protocol');
  });

  it('refuses a head trickled in more reads than any server needs (bounded copying)', async () => {
    const served = await rawServer((socket) => {
      const head = `HTTP/1.1 200 OK\r\nx-slow: ${'a'.repeat(600)}\r\ncontent-length: 0\r\n\r\n`;
      let at = 0;
      // One byte per turn of the event loop: each arrives as a read of its own.
      const next = () => {
        if (at >= head.length || socket.destroyed) return;
        socket.write(head[at++]!);
        setTimeout(next, 1);
      };
      next();
    });
    const failure = await get(client(), served.url).then(
      () => undefined,
      (error: BackendClientError) => error,
    );
    assert.equal(failure?.reason, 'protocol');
    assert.equal(failure?.message, 'response head in more than 256 reads');
  });

  const brokenStreams: [string, string, BackendClientError['reason']][] = [
    ['a chunked body cut off', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel', 'truncated'],
    ['a streamed Content-Length body cut off', `HTTP/1.1 200 OK\r\ncontent-length: ${WHOLE_BODY_BYTES + 1}\r\n\r\nabc`, 'truncated'],
    ['a bad chunk size', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n', 'protocol'],
    ['chunk data longer than its size', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n', 'protocol'],
  ];
  for (const [name, answer, reason] of brokenStreams) {
    it(`errors the body stream on ${name}`, async () => {
      const served = await rawServer((socket) => socket.end(answer));
      const response = await get(client(), served.url);
      assert.ok(!Buffer.isBuffer(response.body));
      await rejectsWith(text(response.body), reason);
    });
  }

  it('rejects a small answer that ends before its Content-Length (truncated, never a short Buffer)', async () => {
    const served = await rawServer((socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc'));
    await rejectsWith(get(client(), served.url), 'truncated');
  });

  it('answers with a 502-class error when the connection closes before the answer', async () => {
    const served = await rawServer((socket) => socket.destroy());
    await rejectsWith(get(client(), served.url), 'closed');
  });
});

describe('backend client: connections', () => {
  it('reuses one keep-alive socket for sequential requests, whole and streamed', async () => {
    const served = await httpServer((req, res) => {
      if (req.url === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end('data: 1\n\n');
      } else res.end('small');
    });
    const c = client();
    assert.equal(await text((await get(c, served.url)).body), 'small');
    const sse = await get(c, served.url, '/sse');
    assert.ok(!Buffer.isBuffer(sse.body));
    assert.equal(await text(sse.body), 'data: 1\n\n');
    assert.equal(await text((await get(c, served.url)).body), 'small');
    assert.equal(served.connections, 1);
  });

  it('opens a socket per concurrent request and reuses them all afterwards', async () => {
    const served = await httpServer((_req, res) => setTimeout(() => res.end('x'), 20));
    const c = client();
    await Promise.all([get(c, served.url), get(c, served.url), get(c, served.url)]);
    await Promise.all([get(c, served.url), get(c, served.url), get(c, served.url)]);
    assert.equal(served.connections, 3);
  });

  it('expires idle sockets one second before the Keep-Alive timeout hint', async () => {
    const server = createServer((_req, res) => res.end('x'));
    server.keepAliveTimeout = 2000; // sends Keep-Alive: timeout=2
    const served = await listen(server, { url: '', connections: 0, closed: 0 });
    const c = client();
    await get(c, served.url);
    await get(c, served.url);
    assert.equal(served.connections, 1);
    await sleep(1100);
    assert.equal(served.closed, 1, 'the client closed the idle socket after ~1 s');
    await get(c, served.url);
    assert.equal(served.connections, 2);
  });

  it('times out waiting for the head at the configured milliseconds', async () => {
    const served = await httpServer(() => {});
    const c = client({ headersTimeoutMs: 150 });
    const started = performance.now();
    await rejectsWith(get(c, served.url), 'headers-timeout');
    const elapsed = performance.now() - started;
    // Node's timer clock counts whole milliseconds: 149.x ms is the earliest it can fire.
    assert.ok(elapsed >= 149 && elapsed < 600, `fired after ${elapsed} ms`);
    await waitFor(() => served.closed === 1);
  });

  it('does not time out a streamed body (SSE streams idle for long)', async () => {
    const served = await httpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      setTimeout(() => res.end('data: late\n\n'), 300);
    });
    const response = await get(client({ headersTimeoutMs: 100 }), served.url);
    assert.equal(await text(response.body), 'data: late\n\n');
  });

  it('fails to connect to a closed port', async () => {
    const served = await httpServer(() => {});
    const url = served.url;
    await cleanups.pop()!();
    await rejectsWith(get(client(), url), 'connect');
  });

  it('aborts before the answer: AbortError, the socket is dropped', async () => {
    const served = await httpServer(() => {});
    const exchange = client().request({ url: new URL(served.url), method: 'GET', headers: {} });
    await waitFor(() => served.connections === 1);
    exchange.abort();
    await assert.rejects(exchange.response, { name: 'AbortError' });
    await waitFor(() => served.closed === 1);
  });

  it('aborts a streamed answer: the body is destroyed, the socket dropped', async () => {
    const served = await httpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: 1\n\n');
    });
    const exchange = client().request({ url: new URL(served.url), method: 'GET', headers: {} });
    const response = await exchange.response;
    const body = response.body as Readable;
    exchange.abort();
    await assert.rejects(text(body), { name: 'AbortError' });
    await waitFor(() => served.closed === 1);
  });

  it('destroying a streamed body drops the socket rather than reusing it', async () => {
    const served = await httpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: 1\n\n');
    });
    const c = client();
    ((await get(c, served.url)).body as Readable).destroy();
    await waitFor(() => served.closed === 1);
    const second = (await get(c, served.url)).body as Readable;
    second.destroy();
    assert.equal(served.connections, 2);
  });

  it('pauses the socket while a streamed body is not read (memory stays bounded)', async () => {
    const total = 64 * 1024 * 1024;
    let written = 0;
    const served = await httpServer(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
      const block = Buffer.alloc(64 * 1024, 'x');
      while (written < total && !res.destroyed) {
        written += block.length;
        if (!res.write(block)) await new Promise((resolve) => res.once('drain', resolve));
      }
      res.end();
    });
    const response = await get(client(), served.url);
    const body = response.body as Readable;
    await sleep(300);
    assert.ok(written < 24 * 1024 * 1024, `the server could write only what buffers hold, wrote ${written}`);
    assert.ok(body.readableLength <= 256 * 1024, `buffered ${body.readableLength}`);
    let received = 0;
    for await (const chunk of body) received += (chunk as Buffer).length;
    assert.equal(received, total);
  });

  it('speaks https with SNI and the given CA, and refuses an untrusted certificate', async () => {
    const { key, cert } = selfSignedCertificate();
    const server = createHttpsServer({ key, cert }, (_req, res) => res.end('secure'));
    const served = await listen(server, { url: '', connections: 0, closed: 0 }, 'https');
    const c = client({ ca: cert });
    assert.equal(await text((await get(c, served.url)).body), 'secure');
    assert.equal(await text((await get(c, served.url)).body), 'secure');
    assert.equal(served.connections, 1);
    await rejectsWith(get(client(), served.url), 'connect');
  });

  it('close() destroys idle and busy sockets; later requests fail', async () => {
    const served = await httpServer((req, res) => {
      if (req.url === '/hang') return;
      res.end('x');
    });
    const c = client();
    const hanging = rejectsWith(get(c, served.url, '/hang'), 'closed');
    await get(c, served.url); // on a second socket, idle afterwards
    assert.equal(served.connections, 2);
    await c.close();
    await hanging;
    await waitFor(() => served.closed === 2);
    await rejectsWith(get(c, served.url), 'closed');
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await sleep(5);
  assert.ok(condition(), 'condition not reached within 1 s');
}
