import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Agent, fetch as undiciFetch } from 'undici';
import { sha256 } from '../../src/oauth/secrets.ts';
import type { AccessTokenRecord, GrantRecord } from '../../src/ports/records.ts';
import { startMcpBackend } from '../support/mcp-backend.ts';
import { connectSignedIn, type Stoppable, singleGatewaySetup, startGatewayProcess, stopAll } from '../support/scale-cluster.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

type ToolResult = { content: { type: string; text: string }[] };

/** Issue 5 must-show 3: `kill -9` of a gateway in SQLite mode mid-session; the client carries on after a restart. */
describe('durability: kill -9 of a SQLite gateway mid-session', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-crash-'));
  const started: Stoppable[] = [];
  after(async () => {
    await stopAll(started);
    rmSync(dir, { recursive: true, force: true });
  });

  it('3. restart: same access token, then a refresh, no new sign-in; the database holds no partial records', async () => {
    const backend = await startMcpBackend();
    started.push({ stop: () => backend.close() });
    const dbPath = join(dir, 'gateway.db');
    const { publicUrl, config } = await singleGatewaySetup(started, dbPath, { url: backend.mcpUrl });
    const first = await startGatewayProcess(config, dir, 'first');
    started.push(first);

    const provider = new HeadlessOAuthProvider({ login: 'alice', password: 'alice-password' });
    const client = await connectSignedIn(`${publicUrl}/mcp`, provider);
    assert.equal(((await client.callTool({ name: 'echo', arguments: { text: 'before' } })) as ToolResult).content[0]!.text, 'before');

    // Mid-session: tool calls in flight and other clients registering (writes) when the process dies.
    const inFlight = Array.from({ length: 5 }, () => client.callTool({ name: 'slow', arguments: { ms: 3000 } }));
    let writing = true;
    const registrations = (async () => {
      for (let i = 0; writing && i < 500; i++) {
        await fetch(`${publicUrl}/register`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ client_name: `crash ${i}`, redirect_uris: ['http://127.0.0.1:53682/callback'], token_endpoint_auth_method: 'none' }),
          signal: AbortSignal.timeout(2000),
        }).catch(() => {});
      }
    })();
    await sleep(300);
    process.kill(first.pid, 'SIGKILL');
    assert.deepEqual(await first.exited, { code: null, signal: 'SIGKILL' });
    writing = false;
    await registrations;
    // The SDK leaves a call whose stream broke pending until its timeout; closing the client ends them.
    await client.close().catch(() => {});
    const outcomes = await Promise.allSettled(inFlight);
    assert.ok(outcomes.every((o) => o.status === 'rejected'), 'in-flight calls fail with the process');

    // No partial records: the file is consistent and every token points at a whole grant.
    const db = new DatabaseSync(dbPath);
    try {
      assert.equal((db.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check, 'ok');
      const rows = db.prepare('SELECT key, value FROM kv').all() as { key: string; value: string }[];
      const values = new Map(rows.map((r) => [r.key, JSON.parse(r.value) as unknown]));
      for (const [key, value] of values) {
        if (key.startsWith('at:')) assert.ok(values.has(`grant:${(value as AccessTokenRecord).grantId}`), `${key} has its grant`);
        if (key.startsWith('rt:')) assert.ok(values.has(`grant:${(value as { grantId: string }).grantId}`), `${key} has its grant`);
        if (key.startsWith('grant:')) assert.ok(values.has(`rt:${(value as GrantRecord).refreshTokenHash}`), `${key} has its refresh token`);
      }
      assert.ok(values.has(`at:${sha256(provider.tokens()!.access_token)}`));
      const registered = rows.filter((r) => r.key.startsWith('client:mcpgw_client_')).length;
      assert.ok(registered >= 2, `registrations before the kill were kept (${registered})`);
    } finally {
      db.close();
    }

    const second = await startGatewayProcess(config, dir, 'second');
    started.push(second);
    const pagesBefore = provider.pages.length;
    provider.authorizationCode = undefined;
    // A fresh connection pool, as a restarted client would have: a keep-alive socket to the killed
    // process that the loaded event loop has not yet seen close would fail the first request.
    const pool = new Agent();
    started.push({ stop: () => pool.close() });
    const freshFetch = ((url: string | URL, init?: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher: pool })) as unknown as typeof fetch;
    const again = new Client({ name: 'scale-test', version: '1.0.0' });
    await again.connect(new StreamableHTTPClientTransport(new URL(`${publicUrl}/mcp`), { authProvider: provider, fetch: freshFetch }));
    assert.equal(((await again.callTool({ name: 'echo', arguments: { text: 'after' } })) as ToolResult).content[0]!.text, 'after');
    await again.close();
    const refreshBefore = provider.tokens()!.refresh_token;
    assert.equal(await auth(provider, { serverUrl: `${publicUrl}/mcp`, fetchFn: freshFetch }), 'AUTHORIZED');
    assert.notEqual(provider.tokens()!.refresh_token, refreshBefore, 'the refresh token rotated');
    assert.equal(provider.authorizationCode, undefined, 'no new sign-in');
    assert.equal(provider.pages.length, pagesBefore);
  });
});
