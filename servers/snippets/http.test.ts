import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import pino from 'pino';
import { createFolderStorage } from './folder-storage.ts';
import { type RunningSnippetsServer, type SnippetsHttpOptions, startSnippetsServer } from './http.ts';

const KEY = 'test-function-key-0123456789';
const AUDIENCE = 'http://127.0.0.1:8080/mcp';
const ISSUER = 'http://127.0.0.1:8080';
const INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};
const silent = pino({ level: 'silent' });
type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

async function withTempDir(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'snippets-http-'));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A server over folder storage in a fresh temp dir (port 0, silent); close() also removes the dir. */
async function startInTempDir(options: Omit<SnippetsHttpOptions, 'storage' | 'port' | 'logger'>) {
  const temp = await withTempDir();
  const running = await startSnippetsServer({ storage: await createFolderStorage(temp.dir), port: 0, logger: silent, ...options });
  return {
    running,
    async close() {
      await running.close();
      await temp.remove();
    },
  };
}

async function connectClient(transport: StreamableHTTPClientTransport | SSEClientTransport) {
  const client = new Client({ name: 'http-test', version: '1.0.0' });
  await client.connect(transport);
  return client;
}

function call(client: Client, name: string, args?: Record<string, unknown>): Promise<CallToolResult> {
  return client.callTool({ name, ...(args ? { arguments: args } : {}) }) as Promise<CallToolResult>;
}

async function postJson(url: string, headers: Record<string, string>, body: unknown = INITIALIZE) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

describe('snippets over HTTP with a function key', () => {
  let running: RunningSnippetsServer;
  let close: () => Promise<void>;
  const keyed = { [`x-functions-key`]: KEY };

  before(async () => {
    ({ running, close } = await startInTempDir({ functionKey: KEY, maxBodyBytes: 64 * 1024 }));
  });
  after(async () => {
    await close();
  });

  it('serves the tools over Streamable HTTP to the SDK client', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(running.mcpUrl), { requestInit: { headers: keyed } });
    const client = await connectClient(transport);
    try {
      assert.match(transport.sessionId ?? '', /^[0-9a-f-]{36}$/);
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((tool) => tool.name).sort(), ['delete_snippet', 'get_snippet', 'hello_mcp', 'list_snippets', 'save_snippet']);
      const save = tools.find((tool) => tool.name === 'save_snippet')!;
      assert.deepEqual(save.inputSchema.required, ['snippetname', 'snippet']);
      assert.deepEqual(save.inputSchema.properties?.['snippetname'], {
        type: 'string',
        pattern: '^[A-Za-z0-9._-]{1,128}$',
        minLength: 1,
        maxLength: 128,
        description: 'Name of the snippet: 1-128 characters of A-Z a-z 0-9 . _ - (not "." or ".."), e.g. "todo-list" or "deploy.sh". Case-sensitive.',
      });

      assert.deepEqual((await call(client, 'save_snippet', { snippetname: 'streamable', snippet: 'via /mcp' })).content, [
        { type: 'text', text: 'Saved snippet "streamable" (8 bytes).' },
      ]);
      const got = await call(client, 'get_snippet', { snippetname: 'streamable' });
      assert.equal((got.content[0] as { text: string }).text, 'via /mcp');
      assert.equal((got.structuredContent as { savedBy?: unknown }).savedBy, undefined);
      await transport.terminateSession();
    } finally {
      await client.close();
    }
  });

  it('serves the tools over legacy HTTP+SSE to the SDK client', async () => {
    const client = await connectClient(new SSEClientTransport(new URL(running.sseUrl), { requestInit: { headers: keyed } }));
    try {
      const { tools } = await client.listTools();
      assert.equal(tools.length, 5);
      await call(client, 'save_snippet', { snippetname: 'legacy', snippet: 'via /sse' });
      const got = await call(client, 'get_snippet', { snippetname: 'legacy' });
      assert.equal((got.content[0] as { text: string }).text, 'via /sse');
    } finally {
      await client.close();
    }
  });

  const unauthorized = { error: 'unauthorized', error_description: 'Missing or invalid x-functions-key header' };
  it('refuses requests without the key or with a wrong one: 401 on every endpoint', async () => {
    assert.deepEqual(await postJson(running.mcpUrl, {}), { status: 401, body: unauthorized });
    assert.deepEqual(await postJson(running.mcpUrl, { 'x-functions-key': 'wrong' }), { status: 401, body: unauthorized });
    assert.deepEqual(await postJson(running.mcpUrl, { 'x-functions-key': `${KEY}x` }), { status: 401, body: unauthorized });
    assert.deepEqual(await postJson(`${running.url}/message?sessionId=whatever`, {}), { status: 401, body: unauthorized });
    for (const [method, path] of [['GET', '/mcp'], ['DELETE', '/mcp'], ['GET', '/sse'], ['GET', '/nowhere']] as const) {
      const response = await fetch(running.url + path, { method, headers: { accept: 'text/event-stream' } });
      assert.equal(response.status, 401, `${method} ${path}`);
      assert.deepEqual(await response.json(), unauthorized);
    }
  });

  it('the SDK client without the key fails to connect', async () => {
    const client = new Client({ name: 'no-key', version: '1.0.0' });
    await assert.rejects(client.connect(new StreamableHTTPClientTransport(new URL(running.mcpUrl))), {
      code: 401,
      message: `Streamable HTTP error: Error POSTing to endpoint: ${JSON.stringify(unauthorized)}`,
    });
  });

  it('answers protocol misuse with exact JSON-RPC errors', async () => {
    assert.deepEqual(await postJson(running.mcpUrl, keyed, { jsonrpc: '2.0', id: 2, method: 'tools/list' }), {
      status: 400,
      body: { jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: No valid session ID provided' }, id: null },
    });
    assert.deepEqual(
      await postJson(running.mcpUrl, { ...keyed, 'mcp-session-id': '00000000-0000-0000-0000-000000000000' }, { jsonrpc: '2.0', id: 2, method: 'tools/list' }),
      { status: 404, body: { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null } },
    );
    assert.deepEqual(await postJson(running.mcpUrl, keyed, '{not json'), {
      status: 400,
      body: { jsonrpc: '2.0', error: { code: -32700, message: 'Parse error: request body is not valid JSON' }, id: null },
    });
    assert.deepEqual(await postJson(running.mcpUrl, keyed, { ...INITIALIZE, padding: 'p'.repeat(64 * 1024) }), {
      status: 413,
      body: { jsonrpc: '2.0', error: { code: -32000, message: 'Payload Too Large: request body must not exceed 65536 bytes' }, id: null },
    });
    assert.deepEqual(await postJson(`${running.url}/message?sessionId=nope`, keyed), {
      status: 404,
      body: { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null },
    });
    const notFound = await fetch(`${running.url}/nowhere`, { headers: keyed });
    assert.deepEqual({ status: notFound.status, body: await notFound.json() }, {
      status: 404,
      body: { error: 'not_found', error_description: 'No route for GET /nowhere' },
    });
  });

  it('answers /healthz without a key', async () => {
    const response = await fetch(`${running.url}/healthz`);
    assert.deepEqual({ status: response.status, body: await response.json() }, { status: 200, body: { status: 'ok' } });
  });
});

describe('snippets over HTTP with gateway identity assertions', () => {
  let running: RunningSnippetsServer;
  let jwksServer: Server;
  let close: () => Promise<void>;
  let sign: (
    claims: JWTPayload,
    options?: { key?: PrivateKey; kid?: string; expiresIn?: string | number; audience?: string; issuer?: string },
  ) => Promise<string>;
  let forgeryKey: PrivateKey;

  before(async () => {
    const gatewayKey = await generateKeyPair('ES256');
    forgeryKey = (await generateKeyPair('ES256')).privateKey;
    const jwk = { ...(await exportJWK(gatewayKey.publicKey)), kid: 'gateway-1', alg: 'ES256', use: 'sig' };
    jwksServer = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((done) => jwksServer.listen(0, '127.0.0.1', done));
    const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
    sign = (claims, options = {}) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: options.kid ?? 'gateway-1' })
        .setIssuer(options.issuer ?? ISSUER)
        .setAudience(options.audience ?? AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(options.expiresIn ?? '5m')
        .sign(options.key ?? gatewayKey.privateKey);

    ({ running, close } = await startInTempDir({ functionKey: KEY, identityJwksUrl: jwksUrl, identityAudience: AUDIENCE, identityIssuer: ISSUER }));
  });
  after(async () => {
    await close();
    await new Promise<void>((done) => jwksServer.close(() => done()));
  });

  const grace = {
    sub: 'sub-grace',
    oid: '22222222-2222-2222-2222-222222222222',
    tid: '33333333-3333-3333-3333-333333333333',
    name: 'Grace Hopper',
    email: 'grace@example.com',
    preferred_username: 'grace@example.com',
    roles: ['Snippets.Write'],
    groups: ['g1'],
    client_id: 'https://client.example/metadata.json',
  };

  it('records the verified user as the author (Streamable HTTP)', async () => {
    const headers = { 'x-functions-key': KEY, 'x-mcp-identity': await sign(grace) };
    const client = await connectClient(new StreamableHTTPClientTransport(new URL(running.mcpUrl), { requestInit: { headers } }));
    try {
      assert.match((((await call(client, 'hello_mcp')).content[0]) as { text: string }).text, /^Hello, Grace Hopper! /);
      await call(client, 'save_snippet', { snippetname: 'by-grace', snippet: 'COBOL forever' });
      const got = await call(client, 'get_snippet', { snippetname: 'by-grace' });
      const stored = got.structuredContent as { savedBy: unknown; savedAt: string };
      assert.deepEqual(stored.savedBy, { sub: 'sub-grace', name: 'Grace Hopper', email: 'grace@example.com', oid: grace.oid, tid: grace.tid });
      assert.ok(Math.abs(Date.parse(stored.savedAt) - Date.now()) < 60_000);
    } finally {
      await client.close();
    }
  });

  it('records the verified user as the author (legacy SSE)', async () => {
    const headers = { 'x-functions-key': KEY, 'x-mcp-identity': await sign({ sub: 'sub-linus', name: 'Linus' }) };
    const client = await connectClient(new SSEClientTransport(new URL(running.sseUrl), { requestInit: { headers } }));
    try {
      await call(client, 'save_snippet', { snippetname: 'by-linus', snippet: 'x' });
      const got = await call(client, 'get_snippet', { snippetname: 'by-linus' });
      assert.deepEqual((got.structuredContent as { savedBy: unknown }).savedBy, { sub: 'sub-linus', name: 'Linus' });
    } finally {
      await client.close();
    }
  });

  it('refuses a missing, malformed, forged or expired assertion with 401', async () => {
    const invalid = (reason: string) => ({
      status: 401,
      body: { error: 'invalid_identity', error_description: `Invalid x-mcp-identity assertion: ${reason}` },
    });
    const cases: Array<[label: string, assertion: string | undefined, expected: { status: number; body: unknown }]> = [
      ['missing', undefined, { status: 401, body: { error: 'invalid_identity', error_description: 'Missing x-mcp-identity header' } }],
      ['not a JWT', 'not-a-jwt', invalid('Invalid Compact JWS')],
      ['signed by another key, same kid', await sign(grace, { key: forgeryKey }), invalid('signature verification failed')],
      ['signed by an unknown kid', await sign(grace, { key: forgeryKey, kid: 'attacker' }), invalid('no applicable key found in the JSON Web Key Set')],
      ['expired', await sign(grace, { expiresIn: Math.floor(Date.now() / 1000) - 3600 }), invalid('"exp" claim timestamp check failed')],
    ];
    for (const [label, assertion, expected] of cases) {
      const headers: Record<string, string> = { 'x-functions-key': KEY, ...(assertion ? { 'x-mcp-identity': assertion } : {}) };
      assert.deepEqual(await postJson(running.mcpUrl, headers), expected, label);
    }
    const sse = await fetch(running.sseUrl, { headers: { 'x-functions-key': KEY } });
    assert.equal(sse.status, 401);
    await sse.body?.cancel();
  });

  it('checks audience and issuer on a correctly signed assertion', async () => {
    // Signed with the gateway's own key, so only the claim checks can refuse these.
    const signedWrongAudience = await sign(grace, { audience: 'http://127.0.0.1:8080/other/mcp' });
    assert.deepEqual(await postJson(running.mcpUrl, { 'x-functions-key': KEY, 'x-mcp-identity': signedWrongAudience }), {
      status: 401,
      body: { error: 'invalid_identity', error_description: 'Invalid x-mcp-identity assertion: unexpected "aud" claim value' },
    });
    const signedWrongIssuer = await sign(grace, { issuer: 'https://evil.example' });
    assert.deepEqual(await postJson(running.mcpUrl, { 'x-functions-key': KEY, 'x-mcp-identity': signedWrongIssuer }), {
      status: 401,
      body: { error: 'invalid_identity', error_description: 'Invalid x-mcp-identity assertion: unexpected "iss" claim value' },
    });
  });

  it('still requires the function key when the assertion is valid', async () => {
    assert.deepEqual(await postJson(running.mcpUrl, { 'x-mcp-identity': await sign(grace) }), {
      status: 401,
      body: { error: 'unauthorized', error_description: 'Missing or invalid x-functions-key header' },
    });
  });

  it('refuses a session id opened by another user', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(running.mcpUrl), {
      requestInit: { headers: { 'x-functions-key': KEY, 'x-mcp-identity': await sign(grace) } },
    });
    const client = await connectClient(transport);
    try {
      const other = { 'x-functions-key': KEY, 'x-mcp-identity': await sign({ sub: 'sub-mallory' }), 'mcp-session-id': transport.sessionId! };
      assert.deepEqual(await postJson(running.mcpUrl, other, { jsonrpc: '2.0', id: 9, method: 'tools/list' }), {
        status: 404,
        body: { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null },
      });
    } finally {
      await client.close();
    }
  });
});

describe('startSnippetsServer options', () => {
  it('refuses to start without a key unless allowNoKey, and needs an audience with a JWKS', async () => {
    const temp = await withTempDir();
    try {
      const storage = await createFolderStorage(temp.dir);
      await assert.rejects(startSnippetsServer({ storage, port: 0, logger: silent }), {
        message: 'functionKey is required (set allowNoKey to serve without one)',
      });
      await assert.rejects(
        startSnippetsServer({ storage, port: 0, functionKey: KEY, identityJwksUrl: 'http://127.0.0.1:1/jwks', logger: silent }),
        { message: 'identityAudience is required when identityJwksUrl is set' },
      );
      const open = await startSnippetsServer({ storage, port: 0, allowNoKey: true, logger: silent });
      try {
        const client = await connectClient(new StreamableHTTPClientTransport(new URL(open.mcpUrl)));
        assert.equal((await client.listTools()).tools.length, 5);
        await client.close();
      } finally {
        await open.close();
      }
    } finally {
      await temp.remove();
    }
  });
});

describe('snippets session limits', () => {
  let running: RunningSnippetsServer;
  let close: () => Promise<void>;
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'x-functions-key': KEY };

  before(async () => {
    ({ running, close } = await startInTempDir({ functionKey: KEY, sessionIdleMs: 300, maxSessionsPerUser: 2 }));
  });
  after(async () => {
    await close();
  });

  async function openSession(): Promise<Response> {
    const response = await fetch(running.mcpUrl, { method: 'POST', headers, body: JSON.stringify(INITIALIZE) });
    if (response.status === 200) await response.body?.cancel();
    return response;
  }

  it('caps open sessions per user, then closes idle ones', async () => {
    const first = await openSession();
    const second = await openSession();
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    const third = await openSession();
    assert.equal(third.status, 429);
    assert.deepEqual(await third.json(), {
      jsonrpc: '2.0',
      error: { code: -32000, message: 'Too Many Requests: at most 2 open sessions per user; end one with DELETE' },
      id: null,
    });

    await new Promise((resolve) => setTimeout(resolve, 900));
    const list = { jsonrpc: '2.0', id: 2, method: 'tools/list' };
    const stale = await fetch(running.mcpUrl, {
      method: 'POST',
      headers: { ...headers, 'mcp-session-id': first.headers.get('mcp-session-id')!, 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify(list),
    });
    assert.equal(stale.status, 404, 'the idle session was closed');
    assert.equal((await openSession()).status, 200, 'room for a new session again');
  });
});
