import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type StartedSystem, startSystem } from '../support/child-system.ts';
import { freePort } from '../support/ports.ts';
import { connectSignedIn } from '../support/scale-cluster.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

/** OTLP/JSON (OTLP spec §OTLP/HTTP, JSON Protobuf encoding): ids are hex, attributes key/value pairs. */
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number };
}
const SERVER = 2;
const CLIENT = 3;

/** A loopback OTLP/HTTP receiver: keeps every JSON export body by path (/v1/traces, /v1/metrics). */
function startReceiver(): Promise<{ url: string; server: Server; bodies: Map<string, unknown[]> }> {
  const bodies = new Map<string, unknown[]>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const list = bodies.get(req.url ?? '') ?? [];
      list.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      bodies.set(req.url ?? '', list);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, bodies })));
}

function spansOf(bodies: unknown[] | undefined): (OtlpSpan & { scope: string; service: string })[] {
  const spans: (OtlpSpan & { scope: string; service: string })[] = [];
  for (const body of bodies ?? []) {
    for (const resource of (body as { resourceSpans: { resource: { attributes: OtlpSpan['attributes'] }; scopeSpans: { scope: { name: string }; spans: OtlpSpan[] }[] }[] }).resourceSpans) {
      const service = String(resource.resource.attributes?.find((a) => a.key === 'service.name')?.value['stringValue']);
      for (const scoped of resource.scopeSpans) for (const span of scoped.spans) spans.push({ ...span, scope: scoped.scope.name, service });
    }
  }
  return spans;
}

function attributes(span: OtlpSpan): Record<string, unknown> {
  return Object.fromEntries((span.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]]));
}

type ToolResult = { content: { type: string; text: string }[]; isError?: boolean };

describe('OpenTelemetry over OTLP/HTTP (http/json): client → gateway → snippets server in one trace', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mcpgw-otel-'));
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let system: StartedSystem | undefined;
  before(async () => {
    receiver = await startReceiver();
  });
  after(async () => {
    if (system && system.child.exitCode === null) await system.stop();
    receiver.server.closeAllConnections();
    receiver.server.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a real SDK tool call yields the SERVER span `tools/call hello_mcp`, its backend CLIENT span and the snippets server span, parent to child; a tool error is error.type tool_error; the Store calls of the token exchange are its child spans; the audit record carries the trace id', async () => {
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    const args = ['--port', String(ports[0]), '--idp-port', String(ports[1]), '--snippets-port', String(ports[2]), '--admin-port', String(ports[3]), '--data', dataDir];
    system = await startSystem(args, 60_000, {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_TRACES_SAMPLER: 'always_on',
      OTEL_METRICS_EXPORTER: 'otlp',
    });
    const alice = system.users.find((u) => u.login === 'alice')!;
    const provider = new HeadlessOAuthProvider(alice);
    const client = await connectSignedIn(system.mcpUrl, provider, 'otel-e2e');
    const hello = (await client.callTool({ name: 'hello_mcp', arguments: {} })) as ToolResult;
    assert.equal(hello.isError, undefined);
    const missing = (await client.callTool({ name: 'get_snippet', arguments: { snippetname: 'nowhere' } })) as ToolResult;
    assert.equal(missing.isError, true);
    // A call a quota applies to (dev policy: save_snippet, 30 a minute): its counter is read in the operation's span.
    const saved = (await client.callTool({ name: 'save_snippet', arguments: { snippetname: 'traced', snippet: 'counted' } })) as ToolResult;
    assert.equal(saved.isError, undefined);
    // W3C Trace Context from the client (traceparent, §3.2): the operation's SERVER span continues the client's trace.
    const callerTrace = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' };
    const continued = await fetch(system.mcpUrl, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${provider.tokens()!.access_token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2025-11-25',
        traceparent: `00-${callerTrace.traceId}-${callerTrace.spanId}-01`,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 'traced', method: 'tools/list', params: {} }),
    });
    await continued.arrayBuffer();
    const metrics = await (await fetch(`http://127.0.0.1:${ports[3]}/metrics`)).text();
    await client.close();
    const tokens = provider.tokens()!;
    // Ctrl-C: the gateway closes, then the SDK flushes what it holds (no waiting on an export interval).
    const stopped = await system.stop();
    system = undefined;
    assert.equal(stopped, true);

    const spans = spansOf(receiver.bodies.get('/v1/traces'));
    const server = spans.find((s) => s.name === 'tools/call hello_mcp' && s.kind === SERVER && s.scope === 'mcp-entra-gateway');
    assert.ok(server, `no gateway SERVER span tools/call hello_mcp among ${spans.map((s) => `${s.scope}:${s.name}:${s.kind}`).join(', ')}`);
    assert.equal(server.service, 'mcp-entra-gateway');
    const serverAttributes = attributes(server);
    assert.equal(serverAttributes['mcp.method.name'], 'tools/call');
    assert.equal(serverAttributes['gen_ai.tool.name'], 'hello_mcp');
    assert.equal(serverAttributes['gen_ai.operation.name'], 'execute_tool');
    assert.match(String(serverAttributes['jsonrpc.request.id']), /^\d+$/);
    assert.match(String(serverAttributes['mcp.session.id']), /^[0-9a-f-]{36}$/);
    assert.equal(serverAttributes['mcp.protocol.version'], '2025-11-25');
    assert.equal(serverAttributes['mcp.backend'], 'snippets');
    assert.equal(serverAttributes['user.name'], 'alice');
    assert.match(String(serverAttributes['oauth.client.id']), /^mcpgw_client_/);
    assert.equal(serverAttributes['error.type'], undefined);

    const backend = spans.find((s) => s.kind === CLIENT && s.parentSpanId === server.spanId);
    assert.ok(backend, 'the backend exchange is a CLIENT span under the SERVER span');
    assert.equal(backend.name, 'tools/call hello_mcp');
    assert.equal(backend.traceId, server.traceId);
    assert.equal(attributes(backend)['server.address'], '127.0.0.1');
    assert.equal(attributes(backend)['server.port'], ports[2]);

    const snippets = spans.find((s) => s.scope === 'mcp-snippets' && s.kind === SERVER && s.parentSpanId === backend.spanId);
    assert.ok(snippets, 'the snippets server span continues the trace from the traceparent the gateway sent');
    assert.equal(snippets.name, 'tools/call hello_mcp');
    assert.equal(snippets.traceId, server.traceId);

    const underCaller = spans.find((s) => s.scope === 'mcp-entra-gateway' && s.kind === SERVER && s.traceId === callerTrace.traceId);
    assert.ok(underCaller, 'the request with a traceparent has its SERVER span in the caller’s trace');
    assert.equal(underCaller.name, 'tools/list');
    assert.equal(underCaller.parentSpanId, callerTrace.spanId);

    const toolError = spans.find((s) => s.name === 'tools/call get_snippet' && s.kind === SERVER && s.scope === 'mcp-entra-gateway');
    assert.ok(toolError);
    assert.equal(attributes(toolError)['error.type'], 'tool_error');
    assert.equal(toolError.status?.code, 2, 'span status ERROR');
    const storage = spans.find((s) => s.name === 'storage get' && s.traceId === toolError.traceId);
    assert.ok(storage, 'the storage call is a span of the same trace');

    // The token exchange's Store calls are CLIENT spans under its request span (database client span
    // conventions), named by operation and key prefix; no key, hash or token in any span.
    const token = spans.find((s) => s.name === 'POST /token' && s.kind === SERVER && s.scope === 'mcp-entra-gateway');
    assert.ok(token, 'the token exchange is a SERVER span');
    assert.equal(attributes(token)['http.route'], '/token');
    const storeCalls = spans.filter((s) => s.parentSpanId === token.spanId && attributes(s)['db.system.name'] !== undefined);
    for (const name of ['take code', 'set grant', 'set at', 'set rt']) {
      const call = storeCalls.find((s) => s.name === name);
      assert.ok(call, `no Store span ${name} under POST /token among ${storeCalls.map((s) => s.name).join(', ')}`);
      assert.equal(call.kind, CLIENT);
      assert.equal(call.traceId, token.traceId);
    }
    assert.deepEqual(attributes(storeCalls.find((s) => s.name === 'take code')!), { 'db.system.name': 'sqlite', 'db.operation.name': 'take', 'db.collection.name': 'code' });
    for (const call of spans.filter((s) => attributes(s)['db.system.name'] !== undefined)) {
      const { 'db.collection.name': collection, ...rest } = attributes(call);
      assert.deepEqual(Object.keys(rest).sort(), ['db.operation.name', 'db.system.name'], `${call.name}: ${JSON.stringify(attributes(call))}`);
      assert.match(String(collection), /^[a-z-]+$/, `${call.name}: the key prefix only`);
    }
    // On the MCP path too: the quota's Store calls (a sliding window: this minute's counter and the
    // last) are children of the operation's SERVER span, and the session binding of `initialize`'s.
    const save = spans.find((s) => s.name === 'tools/call save_snippet' && s.kind === SERVER && s.scope === 'mcp-entra-gateway');
    assert.ok(save, 'no SERVER span tools/call save_snippet');
    const quotaCalls = spans.filter((s) => s.parentSpanId === save.spanId && attributes(s)['db.system.name'] !== undefined).map((s) => s.name);
    assert.deepEqual(quotaCalls.sort(), ['get quota', 'increment quota']);
    const initialize = spans.find((s) => s.name === 'initialize' && s.kind === SERVER && s.scope === 'mcp-entra-gateway');
    assert.ok(initialize, 'no SERVER span initialize');
    assert.deepEqual(
      spans.filter((s) => s.parentSpanId === initialize.spanId && attributes(s)['db.system.name'] !== undefined).map((s) => s.name),
      ['setIfAbsent mcp-session'],
    );
    const exportedSpans = JSON.stringify(receiver.bodies.get('/v1/traces'));
    for (const secret of [tokens.access_token, tokens.refresh_token!, provider.authorizationCode!]) assert.ok(!exportedSpans.includes(secret), 'no token or code in any span');

    // The same operations in the audit trail carry their trace.
    const records = readFileSync(join(dataDir, 'audit.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    const audited = records.find((r) => r['event.name'] === 'mcp.operation' && r['gen_ai.tool.name'] === 'hello_mcp');
    assert.equal(audited?.['trace.id'], server.traceId);
    assert.equal(audited?.['span.id'], server.spanId);

    // Metrics: the same instruments on /metrics and over OTLP.
    assert.match(metrics, /^mcp_server_operation_duration_count\{[^}]*gen_ai_tool_name="hello_mcp"[^}]*\} 1$/m);
    assert.match(metrics, /^mcp_client_operation_duration_count\{[^}]*error_type="tool_error"[^}]*\} 1$/m);
    const exported = JSON.stringify(receiver.bodies.get('/v1/metrics') ?? []);
    assert.ok(exported.includes('"mcp.server.operation.duration"'), 'the histogram is exported over OTLP too');
  });
});
