import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { type McpBackend, startMcpBackend } from '../support/mcp-backend.ts';
import { type ProxyHarness, startProxyHarness } from '../support/proxy-harness.ts';

const ACCEPT = 'application/json, text/event-stream';
const initialize = (id = 1) =>
  JSON.stringify({
    jsonrpc: '2.0',
    id,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
  });

/** node:http, so Host can be set (fetch does not allow it). */
function rawRequest(url: string, init: { method: string; headers: Record<string, string>; body?: string }) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const req = httpRequest(url, { method: init.method, headers: init.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

describe('MCP proxy: the gate', () => {
  let backend: McpBackend;
  let gateway: ProxyHarness;
  let alice: string;
  let bob: string;
  let challenge: string;

  before(async () => {
    backend = await startMcpBackend();
    gateway = await startProxyHarness({
      allowedOrigins: ['https://app.example'],
      backends: [
        {
          name: 'test',
          path: '/mcp',
          url: backend.mcpUrl,
          sseUrl: backend.sseUrl,
          scopes: ['mcp:tools', 'mcp:admin'],
          credential: { header: 'x-functions-key', value: 'backend-secret' },
          maxBodyBytes: 2048,
        },
        { name: 'other', path: '/other/mcp', url: backend.mcpUrl },
      ],
    });
    alice = await gateway.tokenFor('alice', 'test');
    bob = await gateway.tokenFor('bob', 'test');
    challenge = `Bearer resource_metadata="${gateway.url}/.well-known/oauth-protected-resource/mcp", scope="mcp:tools mcp:admin"`;
  });
  after(async () => {
    await gateway.close();
    await backend.close();
  });

  const post = (token: string | undefined, body: string, headers: Record<string, string> = {}) =>
    fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: ACCEPT, ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body,
    });

  it('answers 401 with the RFC 9728 challenge on every method of every MCP endpoint when no token is sent', async () => {
    const calls: [string, string][] = [
      ['POST', '/mcp'],
      ['GET', '/mcp'],
      ['DELETE', '/mcp'],
      ['GET', '/mcp/sse'],
      ['POST', '/mcp/message?sessionId=x'],
    ];
    for (const [method, path] of calls) {
      const res = await fetch(`${gateway.url}${path}`, { method, headers: { 'content-type': 'application/json' }, ...(method === 'POST' ? { body: '{}' } : {}) });
      assert.equal(res.status, 401, `${method} ${path}`);
      assert.equal(res.headers.get('www-authenticate'), challenge, `${method} ${path}`);
      assert.deepEqual(await res.json(), { error: 'invalid_token', error_description: 'A bearer token is required' });
    }
    const other = await fetch(`${gateway.url}/other/mcp`, { method: 'GET' });
    assert.equal(other.headers.get('www-authenticate'), `Bearer resource_metadata="${gateway.url}/.well-known/oauth-protected-resource/other/mcp", scope="mcp:tools"`);
  });

  it('answers 401 invalid_token for an unknown token and for a token issued for another backend', async () => {
    const otherToken = await gateway.tokenFor('alice', 'other');
    for (const token of ['mcpgw_at_not-a-real-token', otherToken]) {
      const res = await post(token, initialize());
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), `${challenge}, error="invalid_token"`);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_token');
    }
    // …and the other backend's token works at its own endpoint.
    const own = await fetch(`${gateway.url}/other/mcp`, { method: 'POST', headers: { authorization: `Bearer ${otherToken}`, 'content-type': 'application/json', accept: ACCEPT }, body: initialize() });
    assert.equal(own.status, 200);
    await own.body?.cancel();
  });

  it('answers 403 insufficient_scope naming the scope to step up to, with the ones the token has (none lost on re-authorizing)', async () => {
    const narrow = await gateway.tokenFor('alice', 'test', ['mcp:admin']);
    const res = await post(narrow, initialize());
    assert.equal(res.status, 403);
    assert.equal(
      res.headers.get('www-authenticate'),
      `Bearer error="insufficient_scope", scope="mcp:tools mcp:admin", resource_metadata="${gateway.url}/.well-known/oauth-protected-resource/mcp"`,
    );
    assert.deepEqual(await res.json(), { error: 'insufficient_scope', error_description: 'The access token lacks the scope mcp:tools' });
  });

  it('refuses another user\'s Streamable HTTP session id with 404, and serves its owner', async () => {
    const init = await post(alice, initialize());
    assert.equal(init.status, 200);
    const sessionId = init.headers.get('mcp-session-id')!;
    await init.body?.cancel();
    const list = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
    const headers = { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' };
    const stolen = await post(bob, list, headers);
    assert.equal(stolen.status, 404);
    assert.deepEqual(await stolen.json(), { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
    const owner = await post(alice, list, headers);
    assert.equal(owner.status, 200);
    assert.match(await owner.text(), /"name":"echo"/);
  });

  it('refuses a session id the backend never issued (no pre-claiming), without forwarding it', async () => {
    const before = backend.requests.length;
    const list = JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' });
    const guessed = await post(bob, list, { 'mcp-session-id': 'guessed-session-id', 'mcp-protocol-version': '2025-06-18' });
    assert.equal(guessed.status, 404);
    assert.deepEqual(await guessed.json(), { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
    assert.equal(backend.requests.length, before, 'the backend never saw it');
  });

  it('refuses another user\'s legacy SSE session id with 404', async () => {
    const controller = new AbortController();
    const stream = await fetch(`${gateway.url}/mcp/sse`, { headers: { authorization: `Bearer ${alice}`, accept: 'text/event-stream' }, signal: controller.signal });
    assert.equal(stream.status, 200);
    const reader = stream.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    const match = /^event: endpoint\ndata: (\S+)\n\n/.exec(first);
    assert.ok(match, first);
    const messageUrl = match[1]!;
    assert.ok(messageUrl.startsWith(`${gateway.url}/mcp/message?sessionId=`), messageUrl);
    const send = (token: string) =>
      fetch(messageUrl, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: initialize() });
    const stolen = await send(bob);
    assert.equal(stolen.status, 404);
    assert.deepEqual(await stolen.json(), { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
    const owner = await send(alice);
    assert.equal(owner.status, 202);
    // The message URL's sessionId must be there exactly once.
    const sessionId = new URL(messageUrl).searchParams.get('sessionId')!;
    for (const query of ['', '?sessionId=', `?sessionId=${sessionId}&sessionId=${sessionId}`]) {
      const res = await fetch(`${gateway.url}/mcp/message${query}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
        body: initialize(),
      });
      assert.equal(res.status, 400, query);
      assert.deepEqual(await res.json(), { jsonrpc: '2.0', error: { code: -32600, message: 'Bad Request: exactly one sessionId query parameter is required' }, id: null });
    }
    controller.abort();
  });

  it('checks Origin (403 when not allowed) and answers CORS for allowed origins', async () => {
    const evil = await post(alice, initialize(), { origin: 'https://evil.example' });
    assert.equal(evil.status, 403);
    assert.deepEqual(await evil.json(), { jsonrpc: '2.0', error: { code: -32000, message: 'Forbidden: Origin not allowed' }, id: null });

    const allowed = await post(alice, initialize(), { origin: 'https://app.example' });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'https://app.example');
    assert.equal(allowed.headers.get('access-control-expose-headers'), 'mcp-session-id, www-authenticate');
    await allowed.body?.cancel();

    const preflight = await fetch(`${gateway.url}/mcp`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, mcp-session-id' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example');
    assert.equal(preflight.headers.get('access-control-allow-methods'), 'GET, POST, DELETE, OPTIONS');
    assert.equal(
      preflight.headers.get('access-control-allow-headers'),
      'authorization, content-type, mcp-protocol-version, mcp-session-id, last-event-id, mcp-method, mcp-name',
    );
    const evilPreflight = await fetch(`${gateway.url}/mcp`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    assert.equal(evilPreflight.status, 403);
  });

  it('refuses a foreign Host while bound to loopback (DNS rebinding), accepts localhost on any port', async () => {
    const headers = { authorization: `Bearer ${alice}`, 'content-type': 'application/json', accept: ACCEPT };
    const foreign = await rawRequest(`${gateway.url}/mcp`, { method: 'POST', headers: { ...headers, host: 'evil.example.com' }, body: initialize() });
    assert.equal(foreign.status, 403);
    assert.deepEqual(JSON.parse(foreign.body), { jsonrpc: '2.0', error: { code: -32000, message: 'Forbidden: Host not allowed' }, id: null });
    const local = await rawRequest(`${gateway.url}/mcp`, { method: 'POST', headers: { ...headers, host: 'localhost:1234' }, body: initialize() });
    assert.equal(local.status, 200);
  });

  it('answers 400 HeaderMismatch (-32020) when 2026-07-28 Mcp-Method/Mcp-Name disagree with the body', async () => {
    const call = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' } } });
    const base = { 'mcp-protocol-version': '2026-07-28' };
    const cases: [Record<string, string>, string][] = [
      [{ 'mcp-method': 'tools/list', 'mcp-name': 'echo' }, "Header mismatch: Mcp-Method header value 'tools/list' does not match body value 'tools/call'"],
      [{ 'mcp-method': 'tools/call', 'mcp-name': 'slow' }, "Header mismatch: Mcp-Name header value 'slow' does not match body value 'echo'"],
      [{ 'mcp-method': 'tools/call', 'mcp-name': `=?base64?${Buffer.from('slow').toString('base64')}?=` }, "Header mismatch: Mcp-Name header value 'slow' does not match body value 'echo'"],
      [{ 'mcp-method': 'tools/call' }, 'Header mismatch: required Mcp-Name header is missing'],
      [{ 'mcp-name': 'echo' }, 'Header mismatch: required Mcp-Method header is missing'],
    ];
    const before = backend.requests.length;
    for (const [headers, message] of cases) {
      const res = await post(alice, call, { ...base, ...headers });
      assert.equal(res.status, 400);
      assert.deepEqual(await res.json(), { jsonrpc: '2.0', error: { code: -32020, message }, id: 7 });
    }
    assert.equal(backend.requests.length, before, 'mismatched requests never reach the backend');
    // The base64 sentinel form that decodes to the body value passes through.
    const encoded = await post(alice, call, { ...base, 'mcp-method': 'tools/call', 'mcp-name': `=?base64?${Buffer.from('echo').toString('base64')}?=` });
    await encoded.body?.cancel();
    assert.equal(backend.requests.length, before + 1);
    assert.equal(backend.requests.at(-1)!.headers['mcp-name'], '=?base64?ZWNobw==?=');
  });

  it('answers 400 HeaderMismatch (-32020) with the request id when params.name is not a string, never 500', async () => {
    const base = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'echo' };
    const cases: [unknown, string][] = [
      [{ toString: 1, valueOf: 1 }, '{"toString":1,"valueOf":1}'],
      [['echo'], '["echo"]'],
      [null, 'null'],
      [7, '7'],
    ];
    const before = backend.requests.length;
    for (const [name, shown] of cases) {
      const call = JSON.stringify({ jsonrpc: '2.0', id: 'call-9', method: 'tools/call', params: { name } });
      const res = await post(alice, call, base);
      assert.equal(res.status, 400);
      assert.deepEqual(await res.json(), {
        jsonrpc: '2.0',
        error: { code: -32020, message: `Header mismatch: Mcp-Name header value 'echo' does not match body value '${shown}'` },
        id: 'call-9',
      });
    }
    assert.equal(backend.requests.length, before);
  });

  it('a method named like an Object.prototype member (constructor) needs no Mcp-Name', async () => {
    const before = backend.requests.length;
    const call = JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'constructor', params: {} });
    const res = await post(alice, call, { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'constructor' });
    await res.body?.cancel();
    assert.equal(backend.requests.length, before + 1, 'forwarded to the backend, not refused for a missing Mcp-Name');
  });

  it('answers 413 for a body over the backend limit, with or without Content-Length', async () => {
    const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'x'.repeat(4096) } });
    const expected = { jsonrpc: '2.0', error: { code: -32000, message: 'Payload Too Large: request body must not exceed 2048 bytes' }, id: null };
    const res = await post(alice, big);
    assert.equal(res.status, 413);
    assert.deepEqual(await res.json(), expected);
    const chunked = await rawRequest(`${gateway.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json', accept: ACCEPT, 'transfer-encoding': 'chunked' },
      body: big,
    });
    assert.equal(chunked.status, 413);
    assert.deepEqual(JSON.parse(chunked.body), expected);
  });

  it('never forwards the client Authorization or Cookie; adds the credential and a verifiable identity assertion', async () => {
    const before = backend.requests.length;
    const res = await post(alice, initialize(), { cookie: 'session=secret' });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const seen = backend.requests.slice(before);
    assert.equal(seen.length, 1);
    const headers = seen[0]!.headers;
    assert.equal(headers.authorization, undefined);
    assert.equal(headers.cookie, undefined);
    assert.equal(headers['x-functions-key'], 'backend-secret');
    const jwks = createRemoteJWKSet(new URL(`${gateway.url}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(String(headers['x-mcp-identity']), jwks, {
      issuer: gateway.url,
      audience: `${gateway.url}/mcp`,
      algorithms: ['ES256'],
    });
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(payload.sub, 'alice-sub');
    assert.equal(payload['oid'], '11111111-1111-4111-8111-111111111111');
    assert.equal(payload['tid'], '00000000-0000-4000-8000-000000000001');
    assert.equal(payload['name'], 'Alice Admin');
    assert.equal(payload['email'], 'alice@example.com');
    assert.deepEqual(payload['roles'], ['admin']);
    assert.deepEqual(payload['groups'], ['g-1']);
    assert.equal(payload['client_id'], 'https://client.example/metadata.json');
    assert.equal(payload.exp! - payload.iat!, 300);
  });
});
