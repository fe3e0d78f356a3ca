import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type ProxyHarness, startProxyHarness } from '../support/proxy-harness.ts';

const MODERN = '2026-07-28';
const ACK = 'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{}}\n\n';

/** A 2026-07-28 request as the v2 client sends it: `_meta` envelope and the mirrored headers. */
function modernRequest(method: string, params: Record<string, unknown> = {}) {
  return {
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': MODERN, 'mcp-method': method },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN } } }),
  };
}

/**
 * A backend that answers `subscriptions/listen` with an SSE stream it holds open (acknowledged,
 * then silence), and anything else with a small JSON result. It records which requests it saw
 * and which listen streams were closed from the gateway's side.
 */
async function startListenBackend() {
  const seen: { method: string; headers: IncomingMessage['headers'] }[] = [];
  const closedStreams: string[] = [];
  const server: Server = createServer((req, res: ServerResponse) => {
    let raw = '';
    req.on('data', (chunk: Buffer) => (raw += chunk));
    req.on('end', () => {
      const message = JSON.parse(raw) as { id: number; method: string };
      seen.push({ method: message.method, headers: req.headers });
      if (message.method === 'subscriptions/listen') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(ACK);
        res.on('close', () => closedStreams.push(message.method));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { resultType: 'complete' } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    seen,
    closedStreams,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('MCP proxy on 2026-07-28: listen streams, stateless requests, custom headers', () => {
  let backend: Awaited<ReturnType<typeof startListenBackend>>;
  let gateway: ProxyHarness;
  let token: string;

  before(async () => {
    backend = await startListenBackend();
    gateway = await startProxyHarness({ keepAliveIntervalMs: 100, backends: [{ name: 'test', path: '/mcp', url: backend.url }] });
    token = await gateway.tokenFor('alice', 'test');
  });
  after(async () => {
    await gateway.close();
    await backend.close();
  });

  const listen = (signal?: AbortSignal) => {
    const { headers, body } = modernRequest('subscriptions/listen', { notifications: { toolsListChanged: true } });
    return fetch(`${gateway.url}/mcp`, { method: 'POST', headers: { ...headers, authorization: `Bearer ${token}` }, body, signal });
  };

  it('a subscriptions/listen stream stays open and gets keep-alive comments while quiet (streamable-http §Receiving Messages)', async () => {
    const controller = new AbortController();
    const res = await listen(controller.signal);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    assert.equal(res.headers.get('x-accel-buffering'), 'no');
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let received = '';
    while (!received.includes(': keep-alive\n\n')) {
      const { value, done } = await reader.read();
      assert.ok(!done, `stream ended early after ${JSON.stringify(received)}`);
      received += value;
    }
    assert.equal(received, `${ACK}: keep-alive\n\n`);
    controller.abort();
  });

  it('stateless requests (no Mcp-Session-Id) cost no session-binding work in the Store', async () => {
    // Every Store call the gateway makes, observed on the real store (calls pass through).
    const calls: string[] = [];
    const store = gateway.store as unknown as Record<string, (...args: unknown[]) => unknown>;
    const originals = new Map<string, (...args: unknown[]) => unknown>();
    for (const name of ['get', 'set', 'setIfAbsent', 'delete']) {
      const original = store[name]!.bind(gateway.store);
      originals.set(name, store[name]!);
      store[name] = (...args: unknown[]) => {
        calls.push(`${name} ${String(args[0])}`);
        return original(...args);
      };
    }
    try {
      for (const [method, params, name] of [
        ['server/discover', {}, undefined],
        ['tools/list', {}, undefined],
        ['tools/call', { name: 'echo', arguments: {} }, 'echo'],
      ] as const) {
        const { headers, body } = modernRequest(method, params);
        const res = await fetch(`${gateway.url}/mcp`, {
          method: 'POST',
          headers: { ...headers, ...(name ? { 'mcp-name': name } : {}), authorization: `Bearer ${token}` },
          body,
        });
        assert.equal(res.status, 200, method);
        assert.equal(res.headers.get('mcp-session-id'), null);
        await res.body?.cancel();
      }
      assert.deepEqual(calls.filter((call) => call.includes('mcp-session:')), []);
      assert.deepEqual(backend.seen.slice(-3).map((request) => [request.method, request.headers['mcp-session-id']]), [
        ['server/discover', undefined],
        ['tools/list', undefined],
        ['tools/call', undefined],
      ]);
    } finally {
      for (const [name, original] of originals) store[name] = original;
    }
  });

  it('forwards Mcp-Param-* headers to the backend untouched (streamable-http §Server Behavior for Custom Headers)', async () => {
    const { headers, body } = modernRequest('tools/call', { name: 'execute_sql', arguments: { region: 'us-west1' } });
    const res = await fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers: { ...headers, 'mcp-name': 'execute_sql', 'mcp-param-region': 'us-west1', 'Mcp-Param-Greeting': '=?base64?SGVsbG8sIOS4lueVjA==?=', authorization: `Bearer ${token}` },
      body,
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const seen = backend.seen.at(-1)!.headers;
    assert.equal(seen['mcp-param-region'], 'us-west1');
    assert.equal(seen['mcp-param-greeting'], '=?base64?SGVsbG8sIOS4lueVjA==?=');
    assert.equal(seen['mcp-name'], 'execute_sql');
    assert.equal(seen['mcp-method'], 'tools/call');
  });

  // Runs last: it shuts the gateway down.
  it('shutdown ends open subscriptions/listen streams cleanly, as GET streams, instead of waiting for them', async () => {
    const res = await listen();
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    assert.equal((await reader.read()).value, ACK);
    const closedBefore = backend.closedStreams.length;
    const started = Date.now();
    const closing = gateway.app.close();
    let rest = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += value;
    }
    await closing;
    assert.ok(Date.now() - started < 1000, `the stream ended ${Date.now() - started} ms after shutdown began`);
    assert.match(rest, /^(: keep-alive\n\n)*$/, 'nothing but keep-alive comments after the acknowledgement');
    // The backend's stream was closed from the gateway's side, so nothing holds it either.
    for (let i = 0; i < 50 && backend.closedStreams.length === closedBefore; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(backend.closedStreams.length, closedBefore + 1);
  });
});
