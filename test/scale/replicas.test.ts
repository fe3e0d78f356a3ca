import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Redis } from 'ioredis';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { type McpBackend, startMcpBackend } from '../support/mcp-backend.ts';
import { freePort } from '../support/ports.ts';
import {
  connectSignedIn,
  type Forwarder,
  type GatewayProcess,
  gatewayConfig,
  mcpPost,
  openMcpSession,
  type RedisProcess,
  type Stoppable,
  sharedSecrets,
  startDurableRedis,
  startForwarder,
  startGatewayProcess,
  startSharedDevIdp,
  stopAll,
} from '../support/scale-cluster.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

type ToolResult = { content: { type: string; text: string }[] };

/** Issue 5 must-show 1, 2 and 4: two gateway processes sharing one Redis behind a round-robin forwarder. */
describe('scale-out: two gateway replicas on one Redis', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-scale-'));
  const started: Stoppable[] = [];
  let redisPort: number;
  let redis: RedisProcess;
  let backend: McpBackend;
  let forwarder: Forwarder;
  let replicas: GatewayProcess[];
  let mcpUrl: string;

  before(async () => {
    redisPort = await freePort();
    redis = await startDurableRedis(dir, redisPort);
    started.push({ stop: () => redis.stop() });
    backend = await startMcpBackend();
    started.push({ stop: () => backend.close() });
    const [forwarderPort, portA, portB] = [await freePort(), await freePort(), await freePort()];
    const publicUrl = `http://localhost:${forwarderPort}`;
    mcpUrl = `${publicUrl}/mcp`;
    const idp = await startSharedDevIdp(publicUrl);
    started.push(idp);
    forwarder = await startForwarder(forwarderPort, [`http://127.0.0.1:${portA}`, `http://127.0.0.1:${portB}`]);
    started.push(forwarder);
    const secrets = sharedSecrets();
    const [adminA, adminB] = [await freePort(), await freePort()];
    const config = (port: number, adminPort: number) =>
      gatewayConfig({
        publicUrl,
        port,
        adminPort,
        store: { kind: 'redis', url: redis.url, keyPrefix: 'scale:' },
        upstream: idp.upstream,
        secrets,
        backend: { url: backend.mcpUrl, sseUrl: backend.sseUrl },
      });
    replicas = await Promise.all([startGatewayProcess(config(portA, adminA), dir, 'a'), startGatewayProcess(config(portB, adminB), dir, 'b')]);
    started.push(...replicas);
  });
  after(async () => {
    await stopAll(started);
    rmSync(dir, { recursive: true, force: true });
  });

  it('1. SDK sign-in and tool calls with every request alternating replicas; legacy SSE stream on A, POSTs on B', async () => {
    const provider = new HeadlessOAuthProvider({ login: 'alice', password: 'alice-password' });
    const client = await connectSignedIn(mcpUrl, provider);
    try {
      const { tools } = await client.listTools();
      assert.ok(tools.some((t) => t.name === 'echo'));
      const echoed = (await client.callTool({ name: 'echo', arguments: { text: 'via two replicas' } })) as ToolResult;
      assert.equal(echoed.content[0]!.text, 'via two replicas');
      let progress = 0;
      const done = (await client.callTool({ name: 'progress', arguments: { steps: 3, intervalMs: 50 } }, undefined, {
        onprogress: () => progress++,
      })) as ToolResult;
      assert.equal(done.content[0]!.text, 'done after 3 steps');
      assert.equal(progress, 3);
    } finally {
      await client.close();
    }
    // Every step of the flow went through the forwarder, strictly alternating A, B, A, …
    const log = forwarder.log;
    for (const [i, entry] of log.entries()) assert.equal(entry.target, i % 2, `request ${i} ${entry.method} ${entry.path}`);
    const sawOn = (method: string, path: string) => new Set(log.filter((e) => e.method === method && e.path.split('?')[0] === path).map((e) => e.target));
    for (const [method, path] of [
      ['POST', '/register'],
      ['GET', '/authorize'],
      ['POST', '/consent'],
      ['GET', '/callback'],
      ['POST', '/token'],
    ] as const) {
      assert.ok(sawOn(method, path).size >= 1, `${method} ${path} went through the forwarder`);
    }
    assert.deepEqual(sawOn('POST', '/mcp'), new Set([0, 1]), 'MCP POSTs reached both replicas');
    // The steps that hand state to the next one (authorize → consent → IdP → callback → token) crossed replicas.
    const order = log.filter((e) => ['/authorize', '/consent', '/callback', '/token'].includes(e.path.split('?')[0]!));
    for (let i = 1; i < order.length; i++) assert.notEqual(order[i]!.target, order[i - 1]!.target);

    // Legacy HTTP+SSE: the stream is held by A, every message POST lands on B.
    forwarder.route = (request, n) => (request.url?.startsWith('/mcp/sse') ? 0 : request.url?.startsWith('/mcp/message') ? 1 : n % 2);
    const firstLegacy = forwarder.log.length;
    const legacy = new Client({ name: 'scale-legacy', version: '1.0.0' });
    await legacy.connect(new SSEClientTransport(new URL(`${mcpUrl}/sse`), { authProvider: provider }));
    try {
      const echoed = (await legacy.callTool({ name: 'echo', arguments: { text: 'stream on A, post on B' } })) as ToolResult;
      assert.equal(echoed.content[0]!.text, 'stream on A, post on B');
      assert.ok((await legacy.listTools()).tools.length > 0);
    } finally {
      await legacy.close();
      forwarder.route = (_request, n) => n % 2;
    }
    const legacyLog = forwarder.log.slice(firstLegacy);
    assert.deepEqual(
      legacyLog.filter((e) => e.path.startsWith('/mcp/sse')).map((e) => e.target),
      [0],
    );
    const posts = legacyLog.filter((e) => e.path.startsWith('/mcp/message'));
    assert.ok(posts.length >= 3, 'initialize, initialized, tools/call, tools/list');
    assert.ok(posts.every((e) => e.target === 1));
  });

  it('2. a token revoked on A is refused on B within 1 s, though B had cached it', async () => {
    const provider = new HeadlessOAuthProvider({ login: 'bob', password: 'bob-password' });
    assert.equal(await auth(provider, { serverUrl: mcpUrl }), 'REDIRECT');
    assert.equal(await auth(provider, { serverUrl: mcpUrl, authorizationCode: provider.authorizationCode! }), 'AUTHORIZED');
    const token = provider.tokens()!.access_token;
    const [a, b] = replicas;
    const onB = async () => {
      const response = await mcpPost(`${b!.url}/mcp`, token, { id: 1, method: 'ping' }, { timeoutMs: 2000 });
      await response.body?.cancel();
      return response.status;
    };
    // Warm B's in-process token cache (a ping without a session: the backend answers 400, not 401).
    assert.notEqual(await onB(), 401);
    const revokeStartedAt = Date.now();
    const revoke = await fetch(`${a!.url}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token, client_id: provider.clientInformation()!.client_id }),
    });
    assert.equal(revoke.status, 200);
    // Poll B until 1.3 s after the revocation began: whatever B still accepted, it accepted in the first second.
    const polls: { at: number; status: number }[] = [];
    while (Date.now() < revokeStartedAt + 1300) {
      const at = Date.now();
      polls.push({ at: at - revokeStartedAt, status: await onB() });
      await sleep(10);
    }
    const late = polls.filter((p) => p.at >= 1000);
    assert.ok(late.length > 0 && late.every((p) => p.status === 401), `B refuses the token from 1 s on: ${JSON.stringify(late)}`);
    const lastAccepted = polls.filter((p) => p.status !== 401).at(-1)?.at;
    console.log(`# revoke on A (${revoke.status}); B accepted the cached token until +${lastAccepted ?? 'never'} ms, refused from +${polls.find((p) => p.status === 401)?.at} ms`);
  });

  it('4. Redis stopped for 5 s under load: only 503s in the gap, quick answers, full service after, no grant lost', async () => {
    const provider = new HeadlessOAuthProvider({ login: 'alice', password: 'alice-password' });
    assert.equal(await auth(provider, { serverUrl: mcpUrl }), 'REDIRECT');
    assert.equal(await auth(provider, { serverUrl: mcpUrl, authorizationCode: provider.authorizationCode! }), 'AUTHORIZED');
    const { access_token: token, refresh_token: refreshToken } = provider.tokens()!;
    const clientId = provider.clientInformation()!.client_id;
    const sessionId = await openMcpSession(mcpUrl, token);

    type Kind = 'mcp' | 'token' | 'readyz';
    const REQUEST_BOUND_MS = 3000;
    const results: { kind: Kind; at: number; status: number; ms: number; body: string }[] = [];
    const requests: Record<Kind, () => Promise<Response>> = {
      mcp: () => mcpPost(mcpUrl, token, { id: 7, method: 'tools/call', params: { name: 'echo', arguments: { text: 'load' } } }, { sessionId, timeoutMs: REQUEST_BOUND_MS }),
      // A refresh with an unknown token: 400 invalid_grant when the store answers, never consumes anything.
      token: () =>
        fetch(`${mcpUrl.replace('/mcp', '')}/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'mcpgw_rt_unknown', client_id: clientId }),
          signal: AbortSignal.timeout(REQUEST_BOUND_MS),
        }),
      readyz: () => fetch(`${replicas[results.length % 2]!.adminUrl}/readyz`, { signal: AbortSignal.timeout(REQUEST_BOUND_MS) }),
    };
    let running = true;
    const worker = async (kind: Kind) => {
      while (running) {
        const started = Date.now();
        let status = 0;
        let body = '';
        try {
          const response = await requests[kind]();
          status = response.status;
          body = await response.text();
        } catch (error) {
          body = String(error); // status 0: no answer within the bound (a hang) or a dropped connection
        }
        results.push({ kind, at: started, status, ms: Date.now() - started, body });
        await sleep(20);
      }
    };
    const load = Promise.all((['mcp', 'mcp', 'token', 'readyz'] as const).map(worker));

    await sleep(500);
    await redis.stop();
    const stoppedAt = Date.now(); // after the process exited: a durable Redis saves before it goes
    await sleep(5000);
    redis = await startDurableRedis(dir, redisPort);
    const restartedAt = Date.now();
    // Full service within a few seconds of Redis returning (reconnect backoff is capped at 2 s).
    let recoveredAt: number | undefined;
    for (let i = 0; i < 100 && recoveredAt === undefined; i++) {
      await sleep(100);
      const recent = results.filter((r) => r.at > Date.now() - 600);
      if (recent.length >= 6 && recent.every((r) => r.status === 200 || (r.kind === 'token' && r.status === 400))) recoveredAt = Date.now();
    }
    await sleep(500);
    running = false;
    await load;

    const ok = (r: (typeof results)[number]) => r.status === 200 || (r.kind === 'token' && r.status === 400);
    const unexpected = results.filter((r) => !ok(r) && r.status !== 503);
    assert.deepEqual(unexpected, [], 'only 503s besides normal answers: no 500, no 502, no hang');
    const slowest = Math.max(...results.map((r) => r.ms));
    assert.ok(slowest < 1500, `every request answered quickly (slowest ${slowest} ms)`);
    // From 1.1 s after the stop: past the in-process token cache bound (1 s), every answer needs the store.
    const gap = results.filter((r) => r.at > stoppedAt + 1100 && r.at + r.ms < restartedAt);
    assert.ok(gap.length > 20, `requests during the gap: ${gap.length}`);
    for (const kind of ['mcp', 'token', 'readyz'] as const) {
      const during = gap.filter((r) => r.kind === kind);
      assert.ok(during.length > 0 && during.every((r) => r.status === 503), `${kind}: 503 throughout the gap: ${JSON.stringify(during.filter((r) => r.status !== 503).map((r) => ({ s: r.status, t: r.at - stoppedAt, b: r.body.slice(0, 120) })))}`);
    }
    const mcp503 = JSON.parse(gap.find((r) => r.kind === 'mcp')!.body) as { jsonrpc: string; error: { code: number } };
    assert.equal(mcp503.jsonrpc, '2.0');
    assert.equal(mcp503.error.code, -32000);
    assert.equal((JSON.parse(gap.find((r) => r.kind === 'token')!.body) as { error: string }).error, 'temporarily_unavailable');
    assert.ok(recoveredAt !== undefined, 'full service after Redis returned');
    console.log(
      `# redis gap: ${gap.length} requests all 503, slowest answer ${slowest} ms, full service ${recoveredAt - restartedAt} ms after restart, ${results.length} requests total`,
    );

    // No grant lost: the access token still works, the refresh token rotates.
    const after = await mcpPost(mcpUrl, token, { id: 8, method: 'tools/call', params: { name: 'echo', arguments: { text: 'after' } } }, { sessionId });
    assert.equal(after.status, 200);
    assert.match(await after.text(), /after/);
    assert.equal(await auth(provider, { serverUrl: mcpUrl }), 'AUTHORIZED');
    assert.notEqual(provider.tokens()!.refresh_token, refreshToken);
  });

  it('every key the replicas wrote expires, except the durable records (consents)', async () => {
    const client = new Redis(redis.url, { lazyConnect: true });
    await client.connect();
    try {
      const keys = await client.keys('scale:*');
      assert.ok(keys.some((k) => k.startsWith('scale:grant:')) && keys.some((k) => k.startsWith('scale:at:')));
      const durable: string[] = [];
      for (const key of keys) if ((await client.ttl(key)) === -1) durable.push(key);
      const unexpected = durable.filter((k) => !/^scale:(consent:|user-consents:)/.test(k));
      assert.deepEqual(unexpected, []);
      assert.ok(durable.some((k) => k.startsWith('scale:consent:')));
    } finally {
      client.disconnect();
    }
  });
});
