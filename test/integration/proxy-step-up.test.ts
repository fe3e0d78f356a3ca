import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import pino from 'pino';
import { type AuditConfig, createAudit } from '../../src/audit/audit.ts';
import { DEV_POLICY_RULES } from '../../src/dev.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { startSnippetsBehindProxy } from '../support/snippets-gateway.ts';

/**
 * Step-up on the wire (MCP 2025-11-25 authorization §Scope Challenge Handling): the dev sample
 * policy plus a step-up rule that asks for `snippets:write` on the write tools. The SDK client's
 * own re-authorization is shown end to end in test/browser/step-up.test.ts.
 */
const RULES = [
  ...DEV_POLICY_RULES.map((rule) => ({ ...rule, effect: 'allow' as const })),
  { name: 'write-scope', effect: 'step-up' as const, tools: ['save_snippet', 'delete_snippet'], scopes: ['snippets:write'] },
];
const SIGNING_KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const SAVE = { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'save_snippet', arguments: { snippetname: 'n', snippet: 'x' } } };

describe('step-up: a call the policy allows only with a scope the token lacks', () => {
  let dir: string;
  let system: Awaited<ReturnType<typeof startSnippetsBehindProxy>>;
  let auditFile: string;
  let flush: () => Promise<void>;
  let challenge: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snippets-step-up-'));
    auditFile = join(dir, 'audit.jsonl');
    const config: AuditConfig = { sink: 'file', file: { path: auditFile, maxBytes: 1 << 30, maxFiles: 1 }, arguments: 'hash', redact: [], checkpointSeconds: 3600, queueMax: 64 };
    const audit = await createAudit(config, { signingKeyPem: SIGNING_KEY, clock: systemClock, logger: pino({ level: 'silent' }) });
    flush = () => audit.flush();
    system = await startSnippetsBehindProxy(join(dir, 'data'), { policy: { rules: RULES }, scopes: ['mcp:tools', 'snippets:write'], audit });
    challenge = `Bearer error="insufficient_scope", scope="mcp:tools snippets:write", resource_metadata="${system.gateway.url}/.well-known/oauth-protected-resource/mcp"`;
  });
  after(async () => {
    await system.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function post(token: string, body: unknown) {
    const response = await fetch(`${system.gateway.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify(body),
    });
    return { status: response.status, wwwAuthenticate: response.headers.get('www-authenticate'), body: await response.json() };
  }

  it('answers 403 insufficient_scope naming every scope the call needs and the metadata URL; nothing reaches the backend', async () => {
    const alice = await system.gateway.tokenFor('alice', 'snippets', ['mcp:tools'], { roles: ['Snippets.Write'] });
    assert.deepEqual(await post(alice, SAVE), {
      status: 403,
      wwwAuthenticate: challenge,
      body: { error: 'insufficient_scope', error_description: 'The access token lacks the scope snippets:write' },
    });
    // A batch holding such a call is challenged whole (the client re-authorizes and sends it again).
    const batch = await post(alice, [{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hello_mcp', arguments: {} } }, SAVE]);
    assert.equal(batch.status, 403);
    assert.equal(batch.wwwAuthenticate, challenge);
    assert.deepEqual(await readdir(join(dir, 'data')), []);
  });

  async function connect(token: string) {
    const client = new Client({ name: 'step-up', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${system.gateway.url}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
    return client;
  }

  it('with the scope the same call goes through', async () => {
    const alice = await system.gateway.tokenFor('alice', 'snippets', ['mcp:tools', 'snippets:write'], { roles: ['Snippets.Write'] });
    const client = await connect(alice);
    try {
      const saved = await client.callTool(SAVE.params);
      assert.equal(saved.isError, undefined);
    } finally {
      await client.close();
    }
    assert.deepEqual(await readdir(join(dir, 'data')), ['n.json']);
  });

  it('a user no rule allows gets "Tool not found", never a scope challenge: hidden tools stay hidden', async () => {
    const bob = await system.gateway.tokenFor('bob', 'snippets', ['mcp:tools'], { roles: ['Snippets.Read'] });
    assert.deepEqual(await post(bob, SAVE), {
      status: 200,
      wwwAuthenticate: null,
      body: { jsonrpc: '2.0', error: { code: -32602, message: 'Tool save_snippet not found' }, id: 5 },
    });
  });

  it('the step-up tools stay listed for a user who may call them after the step-up', async () => {
    const alice = await system.gateway.tokenFor('alice', 'snippets', ['mcp:tools'], { roles: ['Snippets.Write'] });
    const client = await connect(alice);
    try {
      const names = (await client.listTools()).tools.map((t) => t.name).sort();
      assert.deepEqual(names, ['delete_snippet', 'get_snippet', 'hello_mcp', 'list_snippets', 'save_snippet']);
    } finally {
      await client.close();
    }
  });

  it('legacy SSE: the POST is answered with the same 403 and challenge (not on the stream), which the SDK client reports', async () => {
    const alice = await system.gateway.tokenFor('alice', 'snippets', ['mcp:tools'], { roles: ['Snippets.Write'] });
    const seen: { status: number; wwwAuthenticate: string | null }[] = [];
    const transport = new SSEClientTransport(new URL(`${system.gateway.url}/mcp/sse`), {
      requestInit: { headers: { Authorization: `Bearer ${alice}` } },
      fetch: async (url, init) => {
        const response = await fetch(url, init);
        if (init?.method === 'POST') seen.push({ status: response.status, wwwAuthenticate: response.headers.get('www-authenticate') });
        return response;
      },
    });
    const client = new Client({ name: 'step-up-sse', version: '1.0.0' });
    await client.connect(transport);
    try {
      await assert.rejects(client.callTool({ name: 'save_snippet', arguments: { snippetname: 'sse', snippet: 'x' } }), /HTTP 403.*insufficient_scope/);
      assert.deepEqual(seen.at(-1), { status: 403, wwwAuthenticate: challenge });
    } finally {
      await client.close();
    }
  });

  it('the audit trail records the challenged call as a step-up with its rule and status 403', async () => {
    await flush();
    const records = (await readFile(auditFile, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((r) => r['event.name'] === 'mcp.operation' && r['gen_ai.tool.name'] === 'save_snippet');
    const first = records[0]!;
    assert.equal(first['gateway.policy.decision'], 'step_up');
    assert.equal(first['gateway.policy.rule'], 'write-scope');
    assert.equal(first['http.response.status_code'], 403);
  });
});
