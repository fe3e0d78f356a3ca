import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type McpBackend, startMcpBackend } from '../support/mcp-backend.ts';
import { freePort } from '../support/ports.ts';
import { type ProxyHarness, startProxyHarness } from '../support/proxy-harness.ts';

const ACCEPT = 'application/json, text/event-stream';
const PING = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' });

/** A raw HTTP server whose behaviour each test picks; it keeps the responses it holds open. */
async function rawServer(handler: (res: ServerResponse) => void): Promise<{ url: string; held: ServerResponse[]; server: Server }> {
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    req.resume();
    held.push(res);
    handler(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, held, server };
}

describe('MCP proxy: limits and failures', () => {
  let backend: McpBackend;
  let hanging: Awaited<ReturnType<typeof rawServer>>;
  let dying: Awaited<ReturnType<typeof rawServer>>;
  let idle: Awaited<ReturnType<typeof rawServer>>;
  let empty: Awaited<ReturnType<typeof rawServer>>;
  let gateway: ProxyHarness;

  before(async () => {
    backend = await startMcpBackend();
    hanging = await rawServer(() => {});
    dying = await rawServer((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"1"}}\n\n');
      setTimeout(() => res.socket?.destroy(), 100);
    });
    idle = await rawServer((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
    });
    // A backend that labels its 204 with Content-Length: 0 (some frameworks do; RFC 9110 §8.6 says not to).
    empty = await rawServer((res) => res.writeHead(204, { 'content-length': '0' }).end());
    const down = `http://127.0.0.1:${await freePort()}/mcp`;
    gateway = await startProxyHarness({
      keepAliveIntervalMs: 100,
      backends: [
        { name: 'test', path: '/mcp', url: backend.mcpUrl },
        { name: 'down', path: '/down/mcp', url: down, connectTimeoutMs: 500 },
        { name: 'hanging', path: '/hanging/mcp', url: `${hanging.url}/mcp`, headersTimeoutMs: 300 },
        { name: 'dying', path: '/dying/mcp', url: `${dying.url}/mcp` },
        { name: 'idle', path: '/idle/mcp', url: `${idle.url}/mcp` },
        { name: 'empty', path: '/empty/mcp', url: `${empty.url}/mcp` },
      ],
    });
  });
  after(async () => {
    await gateway.close();
    for (const raw of [hanging, dying, idle, empty]) {
      raw.server.closeAllConnections();
      await new Promise((resolve) => raw.server.close(resolve));
    }
    await backend.close();
  });

  const post = async (backendName: string, body: string, init: RequestInit = {}) =>
    fetch(`${gateway.url}${backendName === 'test' ? '' : `/${backendName}`}/mcp`, {
      method: 'POST',
      ...init,
      headers: {
        authorization: `Bearer ${await gateway.tokenFor('alice', backendName)}`,
        'content-type': 'application/json',
        accept: ACCEPT,
        ...(init.headers as Record<string, string> | undefined),
      },
      body,
    });

  it('answers 502 with a JSON-RPC error when the backend is unreachable', async () => {
    const res = await post('down', PING);
    assert.equal(res.status, 502);
    assert.deepEqual(await res.json(), { jsonrpc: '2.0', error: { code: -32000, message: 'Bad Gateway: backend down is unreachable' }, id: null });
  });

  it('passes a 204 on without a Content-Length (RFC 9110 §8.6)', async () => {
    // node:http rather than fetch: fetch hides what the wire carried for a 204.
    const token = await gateway.tokenFor('alice', 'empty');
    const answer = await new Promise<{ status: number; headers: Record<string, unknown> }>((resolve, reject) => {
      const req = httpRequest(`${gateway.url}/empty/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: ACCEPT },
      }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      });
      req.on('error', reject);
      req.end(PING);
    });
    assert.equal(answer.status, 204);
    assert.equal(answer.headers['content-length'], undefined);
  });

  it('answers 504 when the backend does not send headers within headersTimeoutMs', async () => {
    const started = Date.now();
    const res = await post('hanging', PING);
    assert.equal(res.status, 504);
    assert.deepEqual(await res.json(), {
      jsonrpc: '2.0',
      error: { code: -32000, message: 'Gateway Timeout: backend hanging did not answer within 300 ms' },
      id: null,
    });
    assert.ok(Date.now() - started < 2000);
  });

  it('ends the client stream when the backend stream dies mid-way', async () => {
    const res = await post('dying', PING);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const started = Date.now();
    const text = await res.text(); // resolves only when the gateway ends the stream
    assert.match(text, /^event: message\ndata: .*"data":"1"/);
    assert.ok(Date.now() - started < 2000);
  });

  it('sends keep-alive comments on idle SSE streams', async () => {
    const controller = new AbortController();
    const res = await post('idle', PING, { signal: controller.signal });
    assert.equal(res.headers.get('x-accel-buffering'), 'no');
    const reader = res.body!.getReader();
    const started = Date.now();
    const chunk = new TextDecoder().decode((await reader.read()).value);
    assert.equal(chunk, ': keep-alive\n\n');
    assert.ok(Date.now() - started >= 80);
    controller.abort();
  });

  it('aborts the backend request when the client disconnects', async () => {
    const init = await post('test', JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    }));
    const sessionId = init.headers.get('mcp-session-id')!;
    await init.body?.cancel();
    const headers = { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' };
    const controller = new AbortController();
    const abortSeen = backend.nextAbort();
    const call = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'slow', arguments: { ms: 5000 } } });
    const res = await post('test', call, { headers, signal: controller.signal });
    assert.equal(res.status, 200);
    setTimeout(() => controller.abort(), 100);
    const aborted = await Promise.race([abortSeen, new Promise((resolve) => setTimeout(() => resolve('timeout'), 2000))]);
    assert.notEqual(aborted, 'timeout', 'backend observed no abort');
    assert.equal((aborted as { method: string }).method, 'POST');
    assert.equal((aborted as { headers: Record<string, string> }).headers['mcp-session-id'], sessionId);
  });
});
