import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness } from '../support/gateway-harness.ts';
import { type McpBackend, startMcpBackend } from '../support/mcp-backend.ts';
import { type ProxyHarness, startProxyHarness } from '../support/proxy-harness.ts';

const TIMEOUTS = { headersMs: 400, oauthBodyMs: 300, mcpBodyMs: 500, keepAliveMs: 400 };
/** Time given on top of a bound: node:http checks header and request timeouts every headersMs / 4. */
const SLACK_MS = 400;
/** No test waits longer than this for a connection to end. */
const WAIT_BOUND_MS = 5000;

interface Exchange {
  socket: Socket;
  /** Everything the server sent. */
  received(): string;
  /** Resolves when the server closed the connection: ms since open, and all it sent. */
  closed: Promise<{ afterMs: number; text: string }>;
}

/** A raw connection to the gateway (node:net): what a slow or stalling client sends is exactly what is written. */
async function open(baseUrl: string): Promise<Exchange> {
  const { hostname, port } = new URL(baseUrl);
  const socket = connect({ host: hostname === 'localhost' ? '127.0.0.1' : hostname, port: Number(port) });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const openedAt = performance.now();
  let text = '';
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1');
  });
  const closed = new Promise<{ afterMs: number; text: string }>((resolve, reject) => {
    const bound = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connection still open after ${WAIT_BOUND_MS} ms; received: ${text}`));
    }, WAIT_BOUND_MS);
    socket.once('close', () => {
      clearTimeout(bound);
      resolve({ afterMs: performance.now() - openedAt, text });
    });
  });
  socket.on('error', () => {});
  return { socket, received: () => text, closed };
}

/** The status line and the lower-cased headers of the first response in `text`, and its body. */
function parse(text: string): { status: number; headers: Map<string, string>; body: string } {
  const end = text.indexOf('\r\n\r\n');
  assert.ok(end > 0, `a response head, got: ${JSON.stringify(text)}`);
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const headers = new Map(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
  return { status: Number(statusLine!.split(' ')[1]), headers, body: text.slice(end + 4) };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('request timeouts: OAuth endpoints and idle connections', () => {
  let gateway: Harness;
  before(async () => {
    gateway = await startHarness({ config: { timeouts: TIMEOUTS } });
  });
  after(async () => {
    await gateway.close();
  });

  for (const path of ['/token', '/register', '/revoke', '/consent']) {
    it(`a body that stalls after 1 of 100 declared bytes to ${path} gets 408 and the connection closed within timeouts.oauthBodyMs (RFC 9110 §15.5.9)`, async () => {
      const client = await open(gateway.url);
      const type = path === '/register' ? 'application/json' : 'application/x-www-form-urlencoded';
      client.socket.write(`POST ${path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: ${type}\r\ncontent-length: 100\r\n\r\ng`);
      const { afterMs, text } = await client.closed;
      const response = parse(text);
      assert.equal(response.status, 408);
      assert.equal(response.headers.get('connection'), 'close');
      assert.deepEqual(JSON.parse(response.body), {
        error: 'invalid_request',
        error_description: `request body not received within ${TIMEOUTS.oauthBodyMs} ms`,
      });
      assert.ok(afterMs >= TIMEOUTS.oauthBodyMs - 50 && afterMs < TIMEOUTS.oauthBodyMs + SLACK_MS, `closed after ${afterMs} ms`);
    });
  }

  it('a header trickle (slow-loris) gets 408 and the connection closed within timeouts.headersMs', async () => {
    const client = await open(gateway.url);
    client.socket.write('POST /token HTTP/1.1\r\nhost: localhost\r\n');
    const trickle = setInterval(() => {
      if (!client.socket.destroyed) client.socket.write('x');
    }, 50);
    try {
      const { afterMs, text } = await client.closed;
      const response = parse(text);
      assert.equal(response.status, 408);
      assert.equal(response.headers.get('connection'), 'close');
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
      assert.ok(afterMs >= TIMEOUTS.headersMs - 50 && afterMs < TIMEOUTS.headersMs + SLACK_MS, `closed after ${afterMs} ms`);
    } finally {
      clearInterval(trickle);
    }
  });

  it('an idle keep-alive connection is closed after timeouts.keepAliveMs', async () => {
    const client = await open(gateway.url);
    client.socket.write('GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n');
    const answeredAt = performance.now();
    const { text } = await client.closed;
    const idleMs = performance.now() - answeredAt;
    const response = parse(text);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('connection'), 'keep-alive');
    // node:http adds up to one second to the advertised bound for the client's own timer (http.Server keepAliveTimeoutBuffer).
    assert.ok(idleMs >= TIMEOUTS.keepAliveMs - 50 && idleMs < TIMEOUTS.keepAliveMs + 1000 + SLACK_MS, `closed after ${idleMs} ms idle`);
  });
});

describe('request timeouts: MCP uploads', () => {
  let backend: McpBackend;
  let gateway: ProxyHarness;
  before(async () => {
    backend = await startMcpBackend();
    gateway = await startProxyHarness({ timeouts: TIMEOUTS, backends: [{ name: 'test', path: '/mcp', url: backend.mcpUrl }] });
  });
  after(async () => {
    await gateway.close();
    await backend.close();
  });

  it('an authorised upload that stalls mid-body gets 408 with a JSON-RPC error within timeouts.mcpBodyMs, and the backend request is aborted', async () => {
    const token = await gateway.tokenFor('alice', 'test');
    const client = await open(gateway.url);
    const aborted = backend.nextAbort();
    // Chunked, so the gateway streams it to the backend as it arrives.
    client.socket.write(
      `POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${token}\r\naccept: application/json, text/event-stream\r\n` +
        'content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n9\r\n{"jsonrpc\r\n',
    );
    const { afterMs, text } = await client.closed;
    const response = parse(text);
    assert.equal(response.status, 408);
    assert.equal(response.headers.get('connection'), 'close');
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
    assert.deepEqual(JSON.parse(response.body), {
      jsonrpc: '2.0',
      error: { code: -32000, message: `Request Timeout: the request body did not arrive within ${TIMEOUTS.mcpBodyMs} ms` },
      id: null,
    });
    assert.ok(afterMs >= TIMEOUTS.mcpBodyMs - 50 && afterMs < TIMEOUTS.mcpBodyMs + SLACK_MS, `closed after ${afterMs} ms`);
    const seen = await Promise.race([aborted, sleep(WAIT_BOUND_MS).then(() => undefined)]);
    assert.equal(seen?.method, 'POST', 'the backend saw its request aborted');
    assert.equal(seen?.path, '/mcp');
  });

  it('a small authorised body of known length that stalls gets the same 408 (read whole before forwarding)', async () => {
    const token = await gateway.tokenFor('alice', 'test');
    const before = backend.requests.length;
    const client = await open(gateway.url);
    client.socket.write(
      `POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${token}\r\naccept: application/json, text/event-stream\r\n` +
        'content-type: application/json\r\ncontent-length: 100\r\n\r\n{',
    );
    const { afterMs, text } = await client.closed;
    const response = parse(text);
    assert.equal(response.status, 408);
    assert.equal(JSON.parse(response.body).error.message, `Request Timeout: the request body did not arrive within ${TIMEOUTS.mcpBodyMs} ms`);
    assert.ok(afterMs < TIMEOUTS.mcpBodyMs + SLACK_MS, `closed after ${afterMs} ms`);
    assert.equal(backend.requests.length, before, 'nothing reached the backend');
  });

  it('an unauthorised POST /mcp that stalls mid-body gets its 401 at once, and the connection is closed within the request bound', async () => {
    const client = await open(gateway.url);
    client.socket.write('POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{');
    const started = performance.now();
    for (let i = 0; i < 100 && !client.received().includes('\r\n\r\n'); i++) await sleep(10);
    assert.ok(performance.now() - started < 1000, 'answered at once');
    assert.equal(parse(client.received()).status, 401);
    const { afterMs } = await client.closed;
    assert.ok(afterMs < TIMEOUTS.headersMs + TIMEOUTS.mcpBodyMs + SLACK_MS, `closed after ${afterMs} ms`);
  });
});
