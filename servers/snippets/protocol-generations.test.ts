import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport as V1StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import pino from 'pino';
import { createFolderStorage } from './folder-storage.ts';
import { type RunningSnippetsServer, startSnippetsServer } from './http.ts';

// One server, three protocol generations: 2026-07-28 (stateless, v2 client), 2025-11-25 (session,
// v1 client) and 2024-11-05 (HTTP+SSE, v1 client).
const KEY = 'test-function-key-0123456789';
const AUDIENCE = 'http://127.0.0.1:8080/mcp';
const ISSUER = 'http://127.0.0.1:8080';
const MODERN = '2026-07-28';
const ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
};
const TOOL_NAMES = ['delete_snippet', 'get_snippet', 'hello_mcp', 'list_snippets', 'save_snippet'];

describe('snippets speaks 2026-07-28 statelessly and keeps serving older clients', () => {
  let running: RunningSnippetsServer;
  let jwksServer: Server;
  let dir: string;
  let sign: (claims: JWTPayload) => Promise<string>;

  before(async () => {
    const gatewayKey = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(gatewayKey.publicKey)), kid: 'gateway-1', alg: 'ES256', use: 'sig' };
    jwksServer = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((done) => jwksServer.listen(0, '127.0.0.1', done));
    sign = (claims) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: 'gateway-1' })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(gatewayKey.privateKey);
    dir = await mkdtemp(join(tmpdir(), 'snippets-generations-'));
    running = await startSnippetsServer({
      storage: await createFolderStorage(dir),
      port: 0,
      logger: pino({ level: 'silent' }),
      functionKey: KEY,
      identityJwksUrl: `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`,
      identityAudience: AUDIENCE,
      identityIssuer: ISSUER,
    });
  });
  after(async () => {
    await running.close();
    await new Promise<void>((done) => jwksServer.close(() => done()));
    await rm(dir, { recursive: true, force: true });
  });

  async function gatewayHeaders(claims: JWTPayload): Promise<Record<string, string>> {
    return { 'x-functions-key': KEY, 'x-mcp-identity': await sign(claims) };
  }

  async function modernClient(mode: 'auto' | { pin: string }, claims: JWTPayload) {
    const transport = new StreamableHTTPClientTransport(new URL(running.mcpUrl), { requestInit: { headers: await gatewayHeaders(claims) } });
    const client = new Client({ name: 'v2-test', version: '1.0.0' }, { versionNegotiation: { mode } });
    await client.connect(transport);
    return { client, transport };
  }

  /** A raw 2026-07-28 request: the `_meta` envelope and the Mcp-Method header (MCP basic/transports). */
  async function postModern(headers: Record<string, string>, method: string, params: Record<string, unknown> = {}) {
    const response = await fetch(running.mcpUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': MODERN,
        'mcp-method': method,
        ...(typeof params['name'] === 'string' ? { 'mcp-name': params['name'] } : {}),
        ...headers,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: ENVELOPE } }),
    });
    return { status: response.status, sessionId: response.headers.get('mcp-session-id'), body: (await response.json()) as { result: Record<string, unknown> } };
  }

  it('the v2 client pinned to 2026-07-28 lists and calls the tools without initialize or session, as the asserted user', async () => {
    const { client, transport } = await modernClient({ pin: MODERN }, { sub: 'sub-ada', name: 'Ada Lovelace' });
    try {
      assert.equal(client.getNegotiatedProtocolVersion(), MODERN);
      assert.equal(transport.sessionId, undefined);
      assert.deepEqual((await client.listTools()).tools.map((tool) => tool.name).sort(), TOOL_NAMES);
      assert.deepEqual((await client.callTool({ name: 'hello_mcp' })).content, [
        {
          type: 'text',
          text: 'Hello, Ada Lovelace! I am the snippets MCP server: save_snippet, get_snippet, list_snippets and delete_snippet keep text snippets for you.',
        },
      ]);
      await client.callTool({ name: 'save_snippet', arguments: { snippetname: 'modern', snippet: 'stateless' } });
      const got = await client.callTool({ name: 'get_snippet', arguments: { snippetname: 'modern' } });
      assert.deepEqual((got.structuredContent as { content: string; savedBy: unknown }).savedBy, { sub: 'sub-ada', name: 'Ada Lovelace' });
      assert.deepEqual(await client.callTool({ name: 'get_snippet', arguments: {} }), {
        content: [
          {
            type: 'text',
            text: `MCP error -32602: Input validation error: Invalid arguments for tool get_snippet: Missing "snippetname": pass the snippet's name at snippetname`,
          },
        ],
        isError: true,
        _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'snippets', version: '0.1.0' } },
      });
    } finally {
      await client.close();
    }
  });

  it('the v2 client in auto mode discovers 2026-07-28 and uses it', async () => {
    const { client } = await modernClient('auto', { sub: 'sub-ada' });
    try {
      assert.equal(client.getNegotiatedProtocolVersion(), MODERN);
      assert.equal((await client.listTools()).tools.length, 5);
    } finally {
      await client.close();
    }
  });

  it('answers server/discover and stateless calls with resultType, and opens no session', async () => {
    const headers = await gatewayHeaders({ sub: 'sub-ada' });
    const discover = await postModern(headers, 'server/discover');
    assert.equal(discover.status, 200);
    assert.equal(discover.sessionId, null);
    assert.deepEqual(discover.body.result['supportedVersions'], [MODERN]);
    assert.deepEqual(discover.body.result['capabilities'], { tools: { listChanged: true } });
    assert.equal(discover.body.result['resultType'], 'complete');
    const call = await postModern(headers, 'tools/call', { name: 'list_snippets' });
    assert.equal(call.status, 200);
    assert.equal(call.sessionId, null);
    assert.equal(call.body.result['resultType'], 'complete');
  });

  it('stateless requests need the function key and a valid identity assertion too', async () => {
    assert.deepEqual(await postModern({ 'x-mcp-identity': await sign({ sub: 'sub-ada' }) }, 'tools/list'), {
      status: 401,
      sessionId: null,
      body: { error: 'unauthorized', error_description: 'Missing or invalid x-functions-key header' },
    });
    assert.deepEqual(await postModern({ 'x-functions-key': KEY }, 'server/discover'), {
      status: 401,
      sessionId: null,
      body: { error: 'invalid_identity', error_description: 'Missing x-mcp-identity header' },
    });
    assert.deepEqual(await postModern({ 'x-functions-key': KEY, 'x-mcp-identity': 'not-a-jwt' }, 'tools/call', { name: 'hello_mcp' }), {
      status: 401,
      sessionId: null,
      body: { error: 'invalid_identity', error_description: 'Invalid x-mcp-identity assertion: Invalid Compact JWS' },
    });
  });

  it('a subscriptions/listen stream delivers notifications/tools/list_changed', async () => {
    const { client } = await modernClient({ pin: MODERN }, { sub: 'sub-ada' });
    try {
      const changed = new Promise<string>((resolve) => {
        client.setNotificationHandler('notifications/tools/list_changed', (notification) => resolve(notification.method));
      });
      const subscription = await client.listen({ toolsListChanged: true });
      assert.deepEqual(subscription.honoredFilter, { toolsListChanged: true });
      running.notify.toolsChanged();
      assert.equal(await changed, 'notifications/tools/list_changed');
      await subscription.close();
      assert.equal(await subscription.closed, 'local');
    } finally {
      await client.close();
    }
  });

  it('the v1 client still gets a 2025-11-25 session on the same endpoint', async () => {
    const transport = new V1StreamableHTTPClientTransport(new URL(running.mcpUrl), { requestInit: { headers: await gatewayHeaders({ sub: 'sub-bob' }) } });
    const client = new V1Client({ name: 'v1-test', version: '1.0.0' });
    await client.connect(transport);
    try {
      assert.equal(transport.protocolVersion, '2025-11-25');
      assert.match(transport.sessionId ?? '', /^[0-9a-f-]{36}$/);
      const got = await client.callTool({ name: 'get_snippet', arguments: { snippetname: 'modern' } });
      assert.equal((got.content as Array<{ text: string }>)[0]?.text, 'stateless');
      await transport.terminateSession();
    } finally {
      await client.close();
    }
  });

  it('the legacy HTTP+SSE client (2024-11-05) still works on /sse', async () => {
    const client = new V1Client({ name: 'sse-test', version: '1.0.0' });
    await client.connect(new SSEClientTransport(new URL(running.sseUrl), { requestInit: { headers: await gatewayHeaders({ sub: 'sub-carol' }) } }));
    try {
      assert.equal((await client.listTools()).tools.length, 5);
      const got = await client.callTool({ name: 'get_snippet', arguments: { snippetname: 'modern' } });
      assert.equal((got.content as Array<{ text: string }>)[0]?.text, 'stateless');
    } finally {
      await client.close();
    }
  });
});
