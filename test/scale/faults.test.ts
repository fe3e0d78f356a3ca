import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { RedisStore } from '../../src/store/redis.ts';
import { startHarness } from '../support/gateway-harness.ts';
import { startMcpBackend } from '../support/mcp-backend.ts';
import { freePort } from '../support/ports.ts';
import { startRedis } from '../support/redis-server.ts';
import {
  connectSignedIn,
  mcpPost,
  openMcpSession,
  type Stoppable,
  singleGatewaySetup,
  startGatewayProcess,
  stopAll,
} from '../support/scale-cluster.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

const REPO_ROOT = new URL('../..', import.meta.url).pathname;

/** test/support/mcp-backend-process.ts on a fixed port; resolves once it listens. */
async function startBackendProcess(port: number): Promise<Stoppable & { pid: number; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, ['test/support/mcp-backend-process.ts', String(port)], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  };
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const deadline = Date.now() + 15_000;
  while (!output.includes('ready')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`backend process did not start: ${output}`);
    }
    await sleep(50);
  }
  return { pid: child.pid!, exited, stop };
}

async function signIn(mcpUrl: string, login: string): Promise<string> {
  const provider = new HeadlessOAuthProvider({ login, password: `${login}-password` });
  assert.equal(await auth(provider, { serverUrl: mcpUrl }), 'REDIRECT');
  assert.equal(await auth(provider, { serverUrl: mcpUrl, authorizationCode: provider.authorizationCode! }), 'AUTHORIZED');
  return provider.tokens()!.access_token;
}

/** Issue 5 must-show 5 and 6: a backend that dies mid-stream, and SIGTERM with calls in flight. */
describe('faults: backend crash, graceful shutdown', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-faults-'));
  const started: Stoppable[] = [];
  after(async () => {
    await stopAll(started);
    rmSync(dir, { recursive: true, force: true });
  });

  it('5. backend killed mid-stream: the stream ends within 1 s with a JSON-RPC error; new requests work once it is back', async () => {
    const backendPort = await freePort();
    let backend = await startBackendProcess(backendPort);
    started.push({ stop: () => backend.stop() });
    const { mcpUrl, config } = await singleGatewaySetup(started, join(dir, 'backend-crash.db'), { url: `http://127.0.0.1:${backendPort}/mcp` });
    const gateway = await startGatewayProcess(config, dir, 'backend-crash');
    started.push(gateway);
    const token = await signIn(mcpUrl, 'alice');
    const sessionId = await openMcpSession(mcpUrl, token);

    const response = await mcpPost(
      mcpUrl,
      token,
      { id: 1, method: 'tools/call', params: { name: 'progress', arguments: { steps: 50, intervalMs: 100 }, _meta: { progressToken: 'p' } } },
      { sessionId, timeoutMs: 10_000 },
    );
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let received = '';
    while (!received.includes('notifications/progress')) {
      const { value, done } = await reader.read();
      assert.ok(!done, 'stream open until the first progress event');
      received += value;
    }
    const killedAt = Date.now();
    process.kill(backend.pid, 'SIGKILL');
    let streamError: unknown;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        received += value;
      }
    } catch (error) {
      streamError = error;
    }
    const endedAfter = Date.now() - killedAt;
    assert.ok(endedAfter <= 1000, `stream ended ${endedAfter} ms after the kill`);
    assert.doesNotMatch(received, /"result"/, 'the call did not complete');
    assert.ok(
      received.includes('data: {"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Gateway: the backend stream ended before the response"},"id":1}'),
      'the pending request is answered with an error, so the client does not wait for its timeout',
    );
    console.log(`# backend kill -9 → client stream ended after ${endedAfter} ms (${streamError ? `error: ${String(streamError)}` : 'end of stream, no result'})`);
    await backend.exited;

    // While the backend is down: a quick 502 JSON-RPC error, not a hang.
    const down = await mcpPost(mcpUrl, token, { id: 2, method: 'tools/list' }, { sessionId, timeoutMs: 3000 });
    assert.equal(down.status, 502);
    assert.equal(((await down.json()) as { error: { code: number } }).error.code, -32000);

    // Back on the same port: the old backend session is gone with the process, a new one works.
    backend = await startBackendProcess(backendPort);
    const newSession = await openMcpSession(mcpUrl, token);
    const echoed = await mcpPost(mcpUrl, token, { id: 3, method: 'tools/call', params: { name: 'echo', arguments: { text: 'back' } } }, { sessionId: newSession });
    assert.equal(echoed.status, 200);
    assert.match(await echoed.text(), /"text":"back"/);
  });

  it('6. SIGTERM during 50 in-flight tool calls: all 50 complete, the process exits 0', async () => {
    const backend = await startMcpBackend();
    started.push({ stop: () => backend.close() });
    const { publicUrl, config } = await singleGatewaySetup(started, join(dir, 'sigterm.db'), { url: backend.mcpUrl }, { shutdownGraceSeconds: 5 });
    const gateway = await startGatewayProcess(config, dir, 'sigterm');
    started.push(gateway);
    const provider = new HeadlessOAuthProvider({ login: 'bob', password: 'bob-password' });
    const client = await connectSignedIn(`${publicUrl}/mcp`, provider);
    client.onerror = () => {}; // the standalone GET stream ends at shutdown; its reconnects then fail
    try {
      const postsBefore = backend.requests.filter((r) => r.method === 'POST').length;
      const calls = Array.from({ length: 50 }, (_, i) => client.callTool({ name: 'slow', arguments: { ms: 1000 + i } }));
      for (let i = 0; i < 100 && backend.requests.filter((r) => r.method === 'POST').length < postsBefore + 50; i++) await sleep(20);
      assert.equal(backend.requests.filter((r) => r.method === 'POST').length, postsBefore + 50, 'all 50 calls reached the backend');
      const signalledAt = Date.now();
      process.kill(gateway.pid, 'SIGTERM');
      const outcomes = await Promise.allSettled(calls);
      const failed = outcomes.filter((o) => o.status === 'rejected');
      assert.deepEqual(failed, [], 'every in-flight call completed');
      for (const outcome of outcomes) {
        assert.deepEqual((outcome as PromiseFulfilledResult<{ content: unknown }>).value.content, [{ type: 'text', text: 'slow done' }]);
      }
      const exit = await gateway.exited;
      const exitedAfter = Date.now() - signalledAt;
      assert.deepEqual(exit, { code: 0, signal: null }, gateway.output());
      assert.match(gateway.output(), /Stopped cleanly\./);
      assert.ok(exitedAfter < 5000, `exited ${exitedAfter} ms after SIGTERM (grace 5 s)`);
      console.log(`# SIGTERM with 50 calls in flight: all completed, exit 0 after ${exitedAfter} ms`);
    } finally {
      await client.close().catch(() => {});
    }
  });
});

describe('faults: Redis frozen (SIGSTOP) under load', () => {
  const started: Stoppable[] = [];
  after(() => stopAll(started));

  it('every answer during the hang is a 503 within the 1 s command timeout (+ 300 ms margin); service resumes after SIGCONT', async () => {
    const redis = await startRedis();
    started.push(redis);
    const store = await RedisStore.connect({ url: redis.url });
    started.push({ stop: () => store.close() });
    const backend = await startMcpBackend();
    started.push({ stop: () => backend.close() });
    // cacheMs 0: every MCP request reads its token from the Store.
    const gateway = await startHarness({
      store,
      config: { tokens: { cacheMs: 0 } },
      backends: [{ name: 'backend', path: '/mcp', url: backend.mcpUrl }],
    });
    started.push({ stop: () => gateway.close() });
    const token = await signIn(gateway.mcpUrl, 'alice');
    const sessionId = await openMcpSession(gateway.mcpUrl, token);

    const requests = {
      mcp: () => mcpPost(gateway.mcpUrl, token, { id: 1, method: 'tools/list' }, { sessionId, timeoutMs: 5000 }),
      token: () =>
        fetch(`${gateway.publicUrl}/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'r', client_id: 'some-client' }),
          signal: AbortSignal.timeout(5000),
        }),
    };
    type Answer = { kind: keyof typeof requests; status: number; retryAfter: string | null; body: string; elapsedMs: number };
    const answers: Promise<Answer>[] = [];
    process.kill(redis.pid, 'SIGSTOP');
    try {
      // 10 waves of 5 requests, 150 ms apart: later ones queue behind Redis commands already hung.
      for (let wave = 0; wave < 10; wave++) {
        for (const kind of ['mcp', 'token', 'mcp', 'token', 'mcp'] as const) {
          const startedAt = Date.now();
          answers.push(
            requests[kind]().then(async (response) => ({
              kind,
              status: response.status,
              retryAfter: response.headers.get('retry-after'),
              body: await response.text(),
              elapsedMs: Date.now() - startedAt,
            })),
          );
        }
        await sleep(150);
      }
      const settled = await Promise.all(answers);
      assert.equal(settled.length, 50);
      for (const answer of settled) {
        assert.equal(answer.status, 503, JSON.stringify(answer));
        assert.equal(answer.retryAfter, '2');
        if (answer.kind === 'mcp') assert.equal((JSON.parse(answer.body) as { error: { code: number } }).error.code, -32000);
        else assert.equal((JSON.parse(answer.body) as { error: string }).error, 'temporarily_unavailable');
      }
      const slowest = Math.max(...settled.map((a) => a.elapsedMs));
      assert.ok(slowest <= 1300, `slowest 503 after ${slowest} ms (command timeout 1000 ms)`);
      console.log(`# Redis frozen: 50 requests in 10 waves, all 503, slowest after ${slowest} ms`);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }

    // The same connection serves again once Redis answers: no restart.
    const deadline = Date.now() + 10_000;
    let resumed = await mcpPost(gateway.mcpUrl, token, { id: 2, method: 'tools/list' }, { sessionId });
    while (resumed.status !== 200 && Date.now() < deadline) {
      await resumed.text();
      await sleep(100);
      resumed = await mcpPost(gateway.mcpUrl, token, { id: 2, method: 'tools/list' }, { sessionId });
    }
    assert.equal(resumed.status, 200, await resumed.clone().text());
    assert.match(await resumed.text(), /"tools":\[/);
  });
});
