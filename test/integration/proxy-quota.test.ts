import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import pino from 'pino';
import { type Audit, createAudit } from '../../src/audit/audit.ts';
import { DEV_POLICY_QUOTAS, DEV_POLICY_RULES } from '../../src/dev.ts';
import { RedisStore } from '../../src/store/redis.ts';
import { userKeyOf } from '../../src/oauth/grants.ts';
import { keys } from '../../src/oauth/keys.ts';
import { type McpBackend, startMcpBackend } from '../support/mcp-backend.ts';
import { type ProxyHarness, startProxyHarness, USERS } from '../support/proxy-harness.ts';
import { type RunningRedis, startRedis } from '../support/redis-server.ts';
import { startSnippetsBehindProxy } from '../support/snippets-gateway.ts';

const POLICY = { rules: DEV_POLICY_RULES.map((rule) => ({ ...rule, effect: 'allow' as const })), quotas: DEV_POLICY_QUOTAS };
const SIGNING_KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

/** A clock the test moves, starting at the beginning of a minute (windows are whole minutes). */
function movableClock() {
  const now = { seconds: Math.floor(Date.now() / 60_000) * 60 };
  return { now, clock: { nowSeconds: () => now.seconds, nowMs: () => now.seconds * 1000 } };
}

async function connect(gateway: ProxyHarness, user: 'alice' | 'bob', legacy = false, url = gateway.url): Promise<Client> {
  const token = await gateway.tokenFor(user, 'snippets', undefined, { roles: ['Snippets.Write'] });
  const requestInit = { headers: { Authorization: `Bearer ${token}` } };
  const transport = legacy
    ? new SSEClientTransport(new URL(`${url}/mcp/sse`), { requestInit })
    : new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit });
  const client = new Client({ name: 'quota-test', version: '1.0.0' });
  await client.connect(transport);
  return client;
}

const save = (client: Client, n: number) => client.callTool({ name: 'save_snippet', arguments: { snippetname: `s${n}`, snippet: 'x' } });

/** The SDK's error for the gateway's rate-limit answer: code, message and data, exactly. */
function rateLimited(retryAfterSeconds: number) {
  return (error: Error & { code?: number; data?: unknown }) => {
    assert.equal(error.code, -32005);
    assert.equal(error.message, `MCP error -32005: Rate limit exceeded: quota "saves" allows 30 calls per user in 60 s; retry in ${retryAfterSeconds} s`);
    assert.deepEqual(error.data, { quota: 'saves', limit: 30, per: 'user', windowSeconds: 60, retryAfterSeconds });
    return true;
  };
}

describe('quotas: the dev sample policy (save_snippet 30 per minute per user) with the SDK client', () => {
  let dir: string;
  let system: Awaited<ReturnType<typeof startSnippetsBehindProxy>>;
  let trail: Audit;
  const { now, clock } = movableClock();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snippets-quota-'));
    const file = { path: join(dir, 'audit.jsonl'), maxBytes: 1 << 30, maxFiles: 1 };
    trail = await createAudit(
      { sink: 'file', file, arguments: 'hash', redact: [], checkpointSeconds: 3600, queueMax: 64 },
      { signingKeyPem: SIGNING_KEY, clock, logger: pino({ level: 'silent' }) },
    );
    system = await startSnippetsBehindProxy(join(dir, 'snippets'), { policy: POLICY, clock, audit: trail });
  });
  after(async () => {
    await system.close();
    await trail.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the 31st save in a minute is refused with -32005 and when to retry; other tools and other users go on; after the wait it passes', async () => {
    const alice = await connect(system.gateway, 'alice');
    const bob = await connect(system.gateway, 'bob');
    try {
      for (let n = 1; n <= 30; n++) assert.equal((await save(alice, n)).isError, undefined, `save ${n}`);
      // 31 in this minute: the next passes once 31·(1 − s) + 1 ≤ 30 in the next minute, s = 2/31 (4 s in).
      await assert.rejects(save(alice, 31), rateLimited(64));
      // A refused call counts too: 32 now, so s = 3/32 (5.6 s into the next minute, 50 s from now).
      now.seconds += 10;
      await assert.rejects(save(alice, 32), rateLimited(56));
      assert.equal((await alice.callTool({ name: 'get_snippet', arguments: { snippetname: 's1' } })).isError, undefined, 'other tools are not counted');
      assert.equal((await save(bob, 1)).isError, undefined, 'another user has a count of their own');
      now.seconds += 56;
      assert.equal((await save(alice, 33)).isError, undefined, 'passes after the wait it was told');
    } finally {
      await alice.close();
      await bob.close();
    }
    await trail.flush();
    const records = (await readFile(join(dir, 'audit.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    const hits = records.filter((r) => r['event.name'] === 'gateway.rate_limited');
    assert.deepEqual(
      hits.map((r) => [r['gateway.limit'], r['gateway.quota'], r['user.name'], r['mcp.backend'], r['oauth.client.id']]),
      [['quota', 'saves', 'alice@example.com', 'snippets', 'https://client.example/metadata.json']],
      'one record for the crossing, not one per refused call',
    );
    const refusedSaves = records.filter((r) => r['event.name'] === 'mcp.operation' && r['rpc.jsonrpc.error_code'] === -32005);
    assert.equal(refusedSaves.length, 2);
  });

  it('on the wire: Streamable HTTP answers 200 with the JSON-RPC error (its id, no-store); legacy SSE on its stream', async () => {
    now.seconds = Math.ceil(now.seconds / 60) * 60 + 3600;
    const token = await system.gateway.tokenFor('alice', 'snippets', undefined, { roles: ['Snippets.Write'] });
    const post = (id: number) =>
      fetch(`${system.gateway.url}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'save_snippet', arguments: { snippetname: 'w', snippet: 'x' } } }),
      });
    const client = await connect(system.gateway, 'alice');
    try {
      for (let n = 1; n <= 30; n++) await save(client, n);
    } finally {
      await client.close();
    }
    const refused = await post(31);
    assert.equal(refused.status, 200);
    assert.equal(refused.headers.get('cache-control'), 'no-store');
    assert.deepEqual(await refused.json(), {
      jsonrpc: '2.0',
      error: {
        code: -32005,
        message: 'Rate limit exceeded: quota "saves" allows 30 calls per user in 60 s; retry in 64 s',
        data: { quota: 'saves', limit: 30, per: 'user', windowSeconds: 60, retryAfterSeconds: 64 },
      },
      id: 31,
    });
    const legacy = await connect(system.gateway, 'alice', true);
    try {
      await assert.rejects(save(legacy, 1), rateLimited(66));
    } finally {
      await legacy.close();
    }
  });

  it('a batch (2025-03-26) with one call over the quota: exactly that call gets -32005 with when to retry, the others are answered "not forwarded" and nothing reaches the backend; every allowed call in it was counted', async () => {
    now.seconds = Math.ceil(now.seconds / 60) * 60 + 3600;
    const token = await system.gateway.tokenFor('alice', 'snippets', undefined, { roles: ['Snippets.Write'] });
    const session = await openSession(system.gateway.url, token, '2025-03-26');
    const saveCall = (id: string, snippetname: string) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'save_snippet', arguments: { snippetname, snippet: 'x' } } });
    const hello = (id: string) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'hello_mcp', arguments: {} } });

    // Under the quota a batch goes to the backend whole: both calls answered by it (in the order they finish), the save done and counted.
    const forwarded = await session.post([saveCall('a', 'batch-1'), hello('b')]);
    assert.equal(forwarded.status, 200);
    assert.deepEqual(
      forwarded.messages.map((m) => [m['id'], 'result' in m]).sort(([a], [b]) => String(a).localeCompare(String(b))),
      [
        ['a', true],
        ['b', true],
      ],
    );
    assert.ok(existsSync(join(dir, 'snippets', 'batch-1.json')));

    const client = await connect(system.gateway, 'alice');
    try {
      for (let n = 2; n <= 29; n++) assert.equal((await save(client, n)).isError, undefined, `save ${n}`);
    } finally {
      await client.close();
    }
    // 29 saves so far: the batch's first save is the 30th (allowed), its second the 31st (over).
    const refused = await session.post([saveCall('c', 'batch-30'), hello('d'), saveCall('e', 'batch-31')]);
    assert.equal(refused.status, 200);
    const notForwarded = { code: -32000, message: 'Batch not forwarded: another request in it was refused; send this one alone' };
    assert.deepEqual(refused.messages, [
      { jsonrpc: '2.0', error: notForwarded, id: 'c' },
      { jsonrpc: '2.0', error: notForwarded, id: 'd' },
      {
        jsonrpc: '2.0',
        error: {
          code: -32005,
          message: 'Rate limit exceeded: quota "saves" allows 30 calls per user in 60 s; retry in 64 s',
          data: { quota: 'saves', limit: 30, per: 'user', windowSeconds: 60, retryAfterSeconds: 64 },
        },
        id: 'e',
      },
    ]);
    assert.ok(!existsSync(join(dir, 'snippets', 'batch-30.json')), 'the allowed save of the refused batch was not forwarded');
    assert.ok(!existsSync(join(dir, 'snippets', 'batch-31.json')));
    // Both saves of the refused batch were counted (32 in this minute: s = 3/32 into the next one).
    const alone = await session.post(saveCall('f', 'batch-32'));
    assert.deepEqual(alone.messages.map((m) => [m['id'], (m['error'] as { code: number; data: unknown }).code, (m['error'] as { data: unknown }).data]), [
      ['f', -32005, { quota: 'saves', limit: 30, per: 'user', windowSeconds: 60, retryAfterSeconds: 66 }],
    ]);
  });
});

/** An MCP session opened with raw JSON-RPC at a protocol revision (initialize + notifications/initialized); `post` sends one message or a batch. */
async function openSession(base: string, token: string, protocolVersion: string) {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const initialized = await fetch(`${base}/mcp`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion, capabilities: {}, clientInfo: { name: 'quota-batch', version: '1' } } }),
  });
  const sessionId = initialized.headers.get('mcp-session-id');
  assert.equal(initialized.status, 200, await initialized.text());
  assert.ok(sessionId);
  const sessionHeaders = { ...headers, 'mcp-session-id': sessionId, 'mcp-protocol-version': protocolVersion };
  const notified = await fetch(`${base}/mcp`, { method: 'POST', headers: sessionHeaders, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
  await notified.arrayBuffer();
  assert.equal(notified.status, 202);
  return {
    /** The answer's status and its JSON-RPC messages (a JSON answer or each SSE event's data), in order. */
    async post(body: unknown): Promise<{ status: number; messages: Record<string, unknown>[] }> {
      const answer = await fetch(`${base}/mcp`, { method: 'POST', headers: sessionHeaders, body: JSON.stringify(body) });
      const text = await answer.text();
      const json = (answer.headers.get('content-type') ?? '').startsWith('text/event-stream')
        ? text
            .split(/\n\n/)
            .map((event) => event.split('\n').filter((line) => line.startsWith('data:')).map((line) => line.slice(5).trim()).join('\n'))
            .filter((data) => data.length > 0)
            .map((data) => JSON.parse(data) as unknown)
        : [JSON.parse(text) as unknown];
      return { status: answer.status, messages: json.flat() as Record<string, unknown>[] };
    },
  };
}

describe('quotas: two replicas on one Redis share the count', () => {
  let dir: string;
  let redis: RunningRedis;
  let system: Awaited<ReturnType<typeof startSnippetsBehindProxy>>;
  const { clock } = movableClock();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snippets-quota-redis-'));
    redis = await startRedis();
    const stores = [await RedisStore.connect({ url: redis.url, keyPrefix: 'quota-test:' }), await RedisStore.connect({ url: redis.url, keyPrefix: 'quota-test:' })];
    system = await startSnippetsBehindProxy(dir, { policy: POLICY, clock, stores });
  });
  after(async () => {
    await system.close();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('saves alternating between replicas: 30 pass, the 31st is refused on either; a POST whose legacy stream is on the other replica gets 429 + Retry-After', async () => {
    const [a, b] = system.replicas as [ProxyHarness, ProxyHarness];
    const onA = await connect(a, 'alice');
    const onB = await connect(a, 'alice', false, b.url);
    try {
      for (let n = 1; n <= 30; n++) assert.equal((await save(n % 2 ? onA : onB, n)).isError, undefined, `save ${n}`);
      await assert.rejects(save(onB, 31), rateLimited(64));
      await assert.rejects(save(onA, 32), rateLimited(66));
    } finally {
      await onA.close();
      await onB.close();
    }

    // HTTP+SSE: the stream opened on A, its message POSTed to B (no stream there to answer on).
    const token = await a.tokenFor('alice', 'snippets', undefined, { roles: ['Snippets.Write'] });
    const controller = new AbortController();
    const stream = await fetch(`${a.url}/mcp/sse`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
    const reader = stream.body!.getReader();
    let text = '';
    while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
    const endpoint = new URL(/data: (.*)/.exec(text)![1]!);
    try {
      const message = await fetch(`${b.url}${endpoint.pathname}${endpoint.search}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 'x', method: 'tools/call', params: { name: 'save_snippet', arguments: { snippetname: 'l', snippet: 'x' } } }),
      });
      assert.equal(message.status, 429);
      // The 33rd save of this minute: 33·(1 − s) + 1 ≤ 30, s = 4/33 (7.3 s into the next).
      assert.equal(message.headers.get('retry-after'), '68');
      const body = (await message.json()) as { error: { code: number; data: unknown }; id: unknown };
      assert.deepEqual([body.error.code, body.error.data, body.id], [-32005, { quota: 'saves', limit: 30, per: 'user', windowSeconds: 60, retryAfterSeconds: 68 }, 'x']);
    } finally {
      controller.abort();
    }
  });

  it('with Redis gone a counted call is answered 503 (never let through uncounted); an uncounted one still reaches the backend', async () => {
    const [a] = system.replicas as [ProxyHarness];
    const token = await a.tokenFor('bob', 'snippets', undefined, { roles: ['Snippets.Write'] });
    // Without Mcp-Session-Id nothing but the token check (cached by this replica, on the frozen clock) and the quota reads the Store.
    const call = (name: string) =>
      fetch(`${a.url}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: { snippetname: 'r', snippet: 'x' } } }),
      });
    const backendAnswer = await call('hello_mcp');
    await redis.stop();
    const unavailable = await call('save_snippet');
    assert.equal(unavailable.status, 503);
    assert.equal(unavailable.headers.get('retry-after'), '2');
    assert.deepEqual(await unavailable.json(), {
      jsonrpc: '2.0',
      error: { code: -32000, message: 'Service Unavailable: the gateway cannot reach its store; try again later' },
      id: null,
    });
    const uncounted = await call('hello_mcp');
    assert.equal(uncounted.status, backendAnswer.status, 'hello_mcp is not under a quota: answered by the backend as before');
    assert.notEqual(uncounted.status, 503);
  });
});

describe('quotas: a global quota (config `policy.quotas`) has one count across two backends', () => {
  let backends: McpBackend[];
  let gateway: ProxyHarness;
  const { clock } = movableClock();

  before(async () => {
    backends = [await startMcpBackend(), await startMcpBackend()];
    gateway = await startProxyHarness({
      clock,
      backends: [
        { name: 'a', path: '/a/mcp', url: backends[0]!.mcpUrl },
        // B also has a quota of its own, counted apart from the global one.
        { name: 'b', path: '/b/mcp', url: backends[1]!.mcpUrl, policy: { rules: [], quotas: [{ name: 'b-echoes', tools: ['echo'], limit: 10, per: 'user', windowSeconds: 60, window: 'fixed' }] } },
      ],
      policy: { quotas: [{ name: 'echoes', tools: ['echo'], limit: 3, per: 'user', windowSeconds: 60, window: 'fixed' }] },
    });
  });
  after(async () => {
    await gateway.close();
    for (const backend of backends) await backend.close();
  });

  async function connectTo(backend: 'a' | 'b', user: 'alice' | 'bob'): Promise<Client> {
    const token = await gateway.tokenFor(user, backend);
    const client = new Client({ name: 'global-quota', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/${backend}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
    return client;
  }

  it('three echoes pass over A and B together, the fourth is refused on either with the global quota named; another user and uncounted methods go on', async () => {
    const onA = await connectTo('a', 'alice');
    const onB = await connectTo('b', 'alice');
    const bob = await connectTo('b', 'bob');
    const echo = (client: Client, text: string) => client.callTool({ name: 'echo', arguments: { text } });
    try {
      assert.deepEqual((await echo(onA, 'one')).content, [{ type: 'text', text: 'one' }]);
      assert.deepEqual((await echo(onB, 'two')).content, [{ type: 'text', text: 'two' }]);
      assert.deepEqual((await echo(onA, 'three')).content, [{ type: 'text', text: 'three' }]);
      // A fixed window: the next call passes when this minute ends (the clock stands at its start).
      const refused = (error: Error & { code?: number; data?: unknown }) => {
        assert.equal(error.code, -32005);
        assert.equal(error.message, 'MCP error -32005: Rate limit exceeded: quota "echoes" allows 3 calls per user in 60 s; retry in 60 s');
        assert.deepEqual(error.data, { quota: 'echoes', limit: 3, per: 'user', windowSeconds: 60, retryAfterSeconds: 60 });
        return true;
      };
      await assert.rejects(echo(onB, 'four'), refused);
      await assert.rejects(echo(onA, 'five'), refused);
      assert.equal((await onA.listTools()).tools.some((tool) => tool.name === 'echo'), true, 'lists are not counted');
      assert.deepEqual((await echo(bob, 'bob')).content, [{ type: 'text', text: 'bob' }], 'another user has a count of their own');
    } finally {
      await onA.close();
      await onB.close();
      await bob.close();
    }
    // One counter for the global quota (scope `*`), whichever backend the calls went to; B's own quota has its own
    // (docs/storage-keys.md; `who` for a per-user quota is "user", a newline and the user key: src/policy/quota.ts).
    const windowIndex = Math.floor(clock.nowSeconds() / 60);
    const count = async (scope: string, name: string, user: keyof typeof USERS) =>
      Number(await gateway.store.get(keys.quota(scope, name, `user\n${userKeyOf(USERS[user])}`, windowIndex))) || undefined;
    assert.equal(await count('*', 'echoes', 'alice'), 5, 'three allowed and two refused calls, over both backends');
    assert.equal(await count('b', 'b-echoes', 'alice'), 2);
    assert.equal(await count('a', 'echoes', 'alice'), undefined);
  });
});
