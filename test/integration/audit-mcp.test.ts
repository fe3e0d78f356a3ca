import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import pino from 'pino';
import { stalledSocket } from '../support/stalled-socket.ts';
import { type Audit, type AuditConfig, createAudit } from '../../src/audit/audit.ts';
import { streamSink } from '../../src/audit/sinks.ts';
import { DEV_POLICY_RULES } from '../../src/dev.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { startSnippetsBehindProxy } from '../support/snippets-gateway.ts';
import type { ProxyHarness, } from '../support/proxy-harness.ts';

type AuditLine = Record<string, unknown>;
const SIGNING_KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

/** The snippets server behind the proxy with the dev sample policy, and an audit trail of its operations. */
async function startSetup(dir: string, audit: (config: AuditConfig) => Promise<Audit>, mode: AuditConfig['arguments'] = 'hash') {
  const config: AuditConfig = {
    sink: 'file',
    file: { path: join(dir, 'audit.jsonl'), maxBytes: 1 << 30, maxFiles: 1 },
    arguments: mode,
    redact: [],
    checkpointSeconds: 3600,
    queueMax: 64,
  };
  const trail = await audit(config);
  const { gateway, snippets } = await startSnippetsBehindProxy(dir, {
    audit: trail,
    // Behind a reverse proxy: the record's client.address is the forwarded one (X-Forwarded-For).
    trustProxy: true,
    policy: { rules: DEV_POLICY_RULES.map((rule) => ({ ...rule, effect: 'allow' as const })) },
  });
  return { trail, gateway, snippets, file: config.file.path };
}

async function connectAs(gateway: ProxyHarness, user: 'alice' | 'bob', role: string, legacy = false): Promise<Client> {
  const token = await gateway.tokenFor(user, 'snippets', undefined, { roles: [role] });
  const requestInit = { headers: { Authorization: `Bearer ${token}` } };
  const transport = legacy
    ? new SSEClientTransport(new URL(`${gateway.url}/mcp/sse`), { requestInit })
    : new StreamableHTTPClientTransport(new URL(`${gateway.url}/mcp`), { requestInit });
  const client = new Client({ name: 'audit-test', version: '1.0.0' });
  await client.connect(transport);
  return client;
}

describe('audit trail: one mcp.operation record per MCP operation', () => {
  let dir: string;
  let setup: Awaited<ReturnType<typeof startSetup>>;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'audit-mcp-'));
    setup = await startSetup(dir, (config) => createAudit(config, { signingKeyPem: SIGNING_KEY, clock: systemClock, logger: pino({ level: 'silent' }) }));
  });
  after(async () => {
    await setup.gateway.close();
    await setup.snippets.close();
    await setup.trail.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function toolCalls(): Promise<AuditLine[]> {
    await setup.trail.flush();
    const lines = (await readFile(setup.file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as AuditLine);
    return lines.filter((r) => r['event.name'] === 'mcp.operation' && r['mcp.method.name'] === 'tools/call');
  }

  it('an allowed tools/call, a refused one and a tool error over Streamable HTTP: one record each with user, client, decision and outcome', async () => {
    const alice = await connectAs(setup.gateway, 'alice', 'Snippets.Write');
    const bob = await connectAs(setup.gateway, 'bob', 'Snippets.Read');
    try {
      await alice.callTool({ name: 'save_snippet', arguments: { snippetname: 'a1', snippet: 'hello' } });
      await assert.rejects(bob.callTool({ name: 'save_snippet', arguments: { snippetname: 'b1', snippet: 'x' } }));
      const missing = await bob.callTool({ name: 'get_snippet', arguments: { snippetname: 'no-such-snippet' } });
      assert.equal(missing.isError, true);
    } finally {
      await alice.close();
      await bob.close();
    }
    const [allowed, refused, toolError, ...rest] = await toolCalls();
    assert.equal(rest.length, 0, 'one record per call');
    const sessionId = allowed!['mcp.session.id'];
    assert.equal(typeof sessionId, 'string');
    assert.deepEqual(
      { ...allowed, time: undefined, 'gateway.duration_ms': undefined, 'mcp.session.id': undefined, seq: undefined, prev: undefined, 'service.instance.id': undefined },
      {
        'event.name': 'mcp.operation',
        time: undefined,
        seq: undefined,
        prev: undefined,
        'service.instance.id': undefined,
        'user.id': allowed!['user.id'],
        'user.name': 'alice@example.com',
        'user.full_name': 'Alice Admin',
        'user.tenant.id': '00000000-0000-4000-8000-000000000001',
        'oauth.client.id': 'https://client.example/metadata.json',
        'mcp.backend': 'snippets',
        'mcp.session.id': undefined,
        'mcp.protocol.version': allowed!['mcp.protocol.version'],
        'client.address': '127.0.0.1',
        'mcp.method.name': 'tools/call',
        'gateway.policy.decision': 'allowed',
        'gateway.policy.rule': 'writers',
        'jsonrpc.request.id': allowed!['jsonrpc.request.id'],
        'gen_ai.tool.name': 'save_snippet',
        'gen_ai.tool.call.arguments': allowed!['gen_ai.tool.call.arguments'],
        'http.response.status_code': 200,
        'gateway.duration_ms': undefined,
      },
    );
    assert.match(String(allowed!['time']), /^\d{4}-\d\d-\d\dT/);
    assert.equal(typeof allowed!['gateway.duration_ms'], 'number');
    assert.match(String(allowed!['mcp.protocol.version']), /^\d{4}-\d\d-\d\d$/);
    assert.match(String(allowed!['jsonrpc.request.id']), /^\d+$/);
    assert.match(String(allowed!['gen_ai.tool.call.arguments']), /^sha256:[\w-]{43}$/, 'arguments hashed by default');
    assert.ok(!JSON.stringify(allowed).includes('hello'), 'not the arguments themselves');

    assert.equal(refused!['user.name'], undefined, 'bob has no preferred username');
    assert.equal(refused!['user.full_name'], 'Bob Builder');
    assert.equal(refused!['gen_ai.tool.name'], 'save_snippet');
    assert.equal(refused!['gateway.policy.decision'], 'denied');
    assert.equal(refused!['gateway.policy.rule'], undefined, 'no rule allowed it');
    assert.equal(refused!['rpc.jsonrpc.error_code'], -32602);
    assert.equal(refused!['http.response.status_code'], 200);

    assert.equal(toolError!['gen_ai.tool.name'], 'get_snippet');
    assert.equal(toolError!['gateway.policy.decision'], 'allowed');
    assert.equal(toolError!['gateway.policy.rule'], 'readers');
    assert.equal(toolError!['error.type'], 'tool_error');
    assert.equal(toolError!['rpc.jsonrpc.error_code'], undefined);
  });

  it('tools/calls over legacy SSE are recorded with the gateway session id, the POST status and the outcome of the answer that came on the stream', async () => {
    const before = (await toolCalls()).length;
    const alice = await connectAs(setup.gateway, 'alice', 'Snippets.Write', true);
    try {
      await alice.callTool({ name: 'hello_mcp', arguments: {} });
      const missing = await alice.callTool({ name: 'get_snippet', arguments: { snippetname: 'no-such-snippet' } });
      assert.equal(missing.isError, true);
    } finally {
      await alice.close();
    }
    const records = (await toolCalls()).slice(before);
    assert.deepEqual(
      records.map((r) => [r['gen_ai.tool.name'], r['gateway.policy.rule'], r['http.response.status_code'], r['error.type'] ?? null, r['rpc.jsonrpc.error_code'] ?? null]),
      [
        ['hello_mcp', 'readers', 202, null, null],
        ['get_snippet', 'readers', 202, 'tool_error', null],
      ],
    );
    assert.equal(typeof records[0]!['mcp.session.id'], 'string');
  });

  it('requests with no operation record: a 401 at the gate, a 400 header mismatch, a 413, a session\'s GET stream and its DELETE; one mcp.request record each with its status', async () => {
    await setup.trail.flush();
    const skip = (await readFile(setup.file, 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
    const url = `${setup.gateway.url}/mcp`;
    const token = await setup.gateway.tokenFor('alice', 'snippets', undefined, { roles: ['Snippets.Write'] });
    const json = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const authorized = { ...json, authorization: `Bearer ${token}` };
    const call = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hello_mcp', arguments: {} } });

    assert.equal((await fetch(url, { method: 'POST', headers: { ...json, 'x-forwarded-for': '203.0.113.9' }, body: call })).status, 401);
    const mismatch = await fetch(url, {
      method: 'POST',
      headers: { ...authorized, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' },
      body: call,
    });
    assert.equal(mismatch.status, 400);
    assert.equal((await fetch(url, { method: 'POST', headers: authorized, body: 'x'.repeat(4 * 1024 * 1024 + 1) })).status, 413);
    const init = await fetch(url, {
      method: 'POST',
      headers: { ...authorized, 'mcp-protocol-version': '2025-11-25' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'audit-test', version: '1' } } }),
    });
    assert.equal(init.status, 200);
    await init.text();
    const session = { authorization: `Bearer ${token}`, 'mcp-session-id': init.headers.get('mcp-session-id')!, 'mcp-protocol-version': '2025-11-25' };
    const aborted = new AbortController();
    const stream = await fetch(url, { headers: { ...session, accept: 'text/event-stream' }, signal: aborted.signal });
    assert.equal(stream.status, 200);
    aborted.abort();
    const ended = await fetch(url, { method: 'DELETE', headers: session });
    assert.equal(ended.status, 200);

    // The GET stream is recorded when the gateway sees it end.
    let requests: AuditLine[] = [];
    for (let i = 0; i < 100 && requests.length < 5; i++) {
      await setup.trail.flush();
      const lines = (await readFile(setup.file, 'utf8')).split('\n').filter(Boolean).slice(skip).map((l) => JSON.parse(l) as AuditLine);
      requests = lines.filter((r) => r['event.name'] === 'mcp.request');
      if (requests.length < 5) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const byMethod = requests.map((r) => [r['http.request.method'], r['http.response.status_code'], r['user.name'] ?? null, r['url.path']]);
    assert.deepEqual(
      byMethod.sort((a, b) => String(a).localeCompare(String(b))),
      [
        ['DELETE', 200, 'alice@example.com', '/mcp'],
        ['GET', 200, 'alice@example.com', '/mcp'],
        ['POST', 400, 'alice@example.com', '/mcp'],
        ['POST', 401, null, '/mcp'],
        ['POST', 413, 'alice@example.com', '/mcp'],
      ],
    );
    // trustProxy: the address the reverse proxy forwarded, else the socket's.
    assert.deepEqual(
      requests.map((r) => r['client.address']).sort(),
      ['127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.1', '203.0.113.9'],
    );
    const get = requests.find((r) => r['http.request.method'] === 'GET')!;
    assert.equal(get['mcp.session.id'], session['mcp-session-id']);
    assert.equal(get['oauth.client.id'], 'https://client.example/metadata.json');
    assert.equal(typeof get['gateway.duration_ms'], 'number');
  });
});

describe('audit trail of MCP operations: argument modes and a sink that never drains', () => {
  async function withSetup(audit: (config: AuditConfig) => Promise<Audit>, mode: AuditConfig['arguments'], run: (s: Awaited<ReturnType<typeof startSetup>>) => Promise<void>) {
    const dir = await mkdtemp(join(tmpdir(), 'audit-mcp-'));
    const setup = await startSetup(dir, audit, mode);
    try {
      await run(setup);
    } finally {
      await setup.gateway.close();
      await setup.snippets.close();
      await setup.trail.close();
      await rm(dir, { recursive: true, force: true });
    }
  }
  const fileAudit = (config: AuditConfig) => createAudit(config, { signingKeyPem: SIGNING_KEY, clock: systemClock, logger: pino({ level: 'silent' }) });

  it('`full` arguments are written as sent, secret-named keys redacted', async () => {
    await withSetup(fileAudit, 'full', async (setup) => {
      const alice = await connectAs(setup.gateway, 'alice', 'Snippets.Write');
      try {
        await alice.callTool({ name: 'get_snippet', arguments: { snippetname: 'x', api_key: 'k-123', password: 'p-456' } });
      } finally {
        await alice.close();
      }
      await setup.trail.flush();
      const text = await readFile(setup.file, 'utf8');
      const call = text.trim().split('\n').map((l) => JSON.parse(l) as AuditLine).find((r) => r['gen_ai.tool.name'] === 'get_snippet');
      assert.deepEqual(call!['gen_ai.tool.call.arguments'], { snippetname: 'x', api_key: '[redacted]', password: '[redacted]' });
      assert.ok(!text.includes('k-123') && !text.includes('p-456'));
    });
  });

  it('a sink whose reader never reads does not hold up tool calls: 50 calls succeed, records beyond the queue are dropped and counted', async () => {
    const { socket, close } = await stalledSocket();
    try {
      const hungAudit = (config: AuditConfig) =>
        createAudit({ ...config, arguments: 'full', queueMax: 4 }, { signingKeyPem: SIGNING_KEY, clock: systemClock, logger: pino({ level: 'silent' }), sink: streamSink(socket) });
      await withSetup(hungAudit, 'full', async (setup) => {
        const alice = await connectAs(setup.gateway, 'alice', 'Snippets.Write');
        try {
          // Large arguments fill the socket's buffers quickly.
          const filler = 'x'.repeat(512 * 1024);
          for (let i = 0; i < 50; i++) {
            const result = await alice.callTool({ name: 'hello_mcp', arguments: { filler } });
            assert.notEqual(result.isError, true);
          }
        } finally {
          await alice.close();
        }
        assert.ok(setup.trail.stats().dropped > 0, `dropped ${setup.trail.stats().dropped}`);
      });
    } finally {
      close();
    }
  });
});

/** OTLP/JSON logs (OTLP spec §OTLP/HTTP, JSON Protobuf encoding): log records grouped by resource and scope. */
interface OtlpLogs {
  resourceLogs: {
    resource: { attributes: { key: string; value: Record<string, unknown> }[] };
    scopeLogs: { scope: { name: string }; logRecords: { eventName?: string; body: { stringValue: string }; traceId?: string; attributes: { key: string; value: Record<string, unknown> }[] }[] }[];
  }[];
}

describe('audit trail over OTLP: `otlp` sink', () => {
  it('a tools/call arrives at a loopback OTLP/HTTP (http/json) receiver as a log record with the MCP, user and outcome attributes and the chained line as body', async () => {
    const bodies: { path: string; body: OtlpLogs }[] = [];
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        bodies.push({ path: req.url ?? '', body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpLogs });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    };
    const dir = await mkdtemp(join(tmpdir(), 'audit-otlp-'));
    const setup = await startSetup(dir, (config) =>
      createAudit({ ...config, sink: 'otlp' }, { signingKeyPem: SIGNING_KEY, clock: systemClock, logger: pino({ level: 'silent' }), env }),
    );
    try {
      const alice = await connectAs(setup.gateway, 'alice', 'Snippets.Write');
      try {
        await alice.callTool({ name: 'hello_mcp', arguments: {} });
      } finally {
        await alice.close();
      }
      await setup.trail.flush();
      assert.ok(bodies.length > 0 && bodies.every((b) => b.path === '/v1/logs'), JSON.stringify(bodies.map((b) => b.path)));
      const resource = bodies[0]!.body.resourceLogs[0]!.resource;
      assert.equal(resource.attributes.find((a) => a.key === 'service.name')?.value['stringValue'], 'mcp-entra-gateway');
      const records = bodies.flatMap((b) => b.body.resourceLogs.flatMap((r) => r.scopeLogs.flatMap((s) => s.logRecords.map((l) => ({ ...l, scope: s.scope.name })))));
      const calls = records.filter((l) => l.attributes.some((a) => a.key === 'gen_ai.tool.name'));
      assert.equal(calls.length, 1);
      const call = calls[0]!;
      const attributes = Object.fromEntries(call.attributes.map((a) => [a.key, Object.values(a.value)[0]]));
      assert.equal(call.eventName, 'mcp.operation');
      assert.equal(call.scope, 'mcp-entra-gateway');
      assert.equal(attributes['mcp.method.name'], 'tools/call');
      assert.equal(attributes['gen_ai.tool.name'], 'hello_mcp');
      assert.equal(attributes['user.name'], 'alice@example.com');
      assert.equal(attributes['gateway.policy.decision'], 'allowed');
      assert.equal(String(attributes['http.response.status_code']), '200');
      const line = JSON.parse(call.body.stringValue) as AuditLine;
      assert.equal(line['gen_ai.tool.name'], 'hello_mcp');
      assert.equal(String(line['seq']), String(attributes['seq']), 'the body is the chained line');
    } finally {
      await setup.gateway.close();
      await setup.snippets.close();
      await setup.trail.close();
      receiver.closeAllConnections();
      receiver.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
