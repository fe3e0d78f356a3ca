import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { verifyAuditFile } from '../../src/audit/verify.ts';
import { type StartedSystem, startSystem } from '../support/child-system.ts';
import { freePort } from '../support/ports.ts';
import { connectSignedIn } from '../support/scale-cluster.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';
import { selfSignedCertificate } from '../support/tls.ts';

/** Application Insights ingestion (Breeze v2.1 track): a JSON array of envelopes, gzipped. */
interface Envelope {
  name: string;
  data: { baseType: string; baseData: Record<string, unknown> & { properties?: Record<string, string> } };
  tags?: Record<string, string>;
}

type ToolResult = { isError?: boolean };

describe('Azure Monitor: with an Application Insights connection string, spans and audit records go to its ingestion endpoint', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mcpgw-azmon-'));
  const envelopes: Envelope[] = [];
  const paths: string[] = [];
  /** Every request body as sent (decompressed), to look for secrets in. */
  const bodies: string[] = [];
  /** What the client held: none of it may reach the ingestion endpoint. */
  const secrets: string[] = [];
  let ingestion: Server | undefined;
  /** Where the child tried to connect through the proxy: host:port of each tunnel asked for. */
  const tunnels: string[] = [];
  let proxy: HttpServer | undefined;
  let system: StartedSystem | undefined;

  before(async () => {
    // The exporter speaks TLS to its ingestion endpoint whatever the scheme: a loopback https
    // receiver, its certificate trusted by the child through NODE_EXTRA_CA_CERTS.
    const tls = selfSignedCertificate();
    const caFile = join(dataDir, 'ingestion-ca.pem');
    writeFileSync(caFile, tls.cert);
    ingestion = createServer(tls, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        paths.push(req.url ?? '');
        const body = Buffer.concat(chunks);
        const text = req.headers['content-encoding'] === 'gzip' ? gunzipSync(body).toString('utf8') : body.toString('utf8');
        bodies.push(text);
        const received = JSON.parse(text) as Envelope[];
        envelopes.push(...received);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ itemsReceived: received.length, itemsAccepted: received.length, errors: [] }));
      });
    });
    await new Promise<void>((resolve) => ingestion!.listen(0, '127.0.0.1', resolve));
    proxy = createHttpServer((req, res) => {
      tunnels.push(`${req.method} ${req.url}`);
      res.writeHead(502).end();
    });
    proxy.on('connect', (req: IncomingMessage, socket: Duplex) => {
      tunnels.push(String(req.url));
      socket.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
    });
    await new Promise<void>((resolve) => proxy!.listen(0, '127.0.0.1', resolve));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const endpoint = `https://127.0.0.1:${(ingestion.address() as AddressInfo).port}/`;
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    system = await startSystem(
      ['--port', String(ports[0]), '--idp-port', String(ports[1]), '--snippets-port', String(ports[2]), '--admin-port', String(ports[3]), '--data', dataDir],
      60_000,
      {
        APPLICATIONINSIGHTS_CONNECTION_STRING: `InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=${endpoint}`,
        // The audit trail to Application Insights too (its connection string: the variable above).
        MCPGW_AUDIT__SINK: 'azure-monitor',
        // Nothing to Microsoft's endpoints but the settings poll, which has no switch (docs/configuration.md,
        // Telemetry): no Statsbeat, no SDK stats, no Live Metrics pings; a platform named so the VM detector does not probe IMDS.
        APPLICATIONINSIGHTS_STATSBEAT_DISABLED: 'true',
        APPLICATION_INSIGHTS_NO_STATSBEAT: 'true',
        APPLICATIONINSIGHTS_SDKSTATS_DISABLED: 'true',
        APPLICATIONINSIGHTS_CONFIGURATION_CONTENT: JSON.stringify({ enableLiveMetrics: false }),
        // The Azure SDK's HTTP pipeline honours HTTPS_PROXY: a loopback proxy that refuses every
        // tunnel shows where else the exporters would connect (the ingestion endpoint is NO_PROXY).
        HTTPS_PROXY: proxyUrl,
        NO_PROXY: '127.0.0.1,localhost',
        CONTAINER_APP_NAME: 'mcp-entra-gateway-test',
        CONTAINER_APP_REPLICA_NAME: 'replica-1',
        NODE_EXTRA_CA_CERTS: caFile,
        // A stray OTLP endpoint in the environment is not a second SDK: Azure Monitor wins.
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
      },
    );
    const metadata = await fetch(`http://localhost:${ports[0]}/.well-known/oauth-authorization-server`);
    assert.equal(metadata.status, 200);

    const alice = system.users.find((u) => u.login === 'alice')!;
    const provider = new HeadlessOAuthProvider(alice);
    const client = await connectSignedIn(system.mcpUrl, provider, 'azmon-e2e');
    assert.equal(((await client.callTool({ name: 'hello_mcp', arguments: {} })) as ToolResult).isError, undefined);
    assert.equal(((await client.callTool({ name: 'get_snippet', arguments: { snippetname: 'nowhere' } })) as ToolResult).isError, true);
    await client.close();
    const tokens = provider.tokens()!;
    secrets.push(tokens.access_token, tokens.refresh_token!, provider.authorizationCode!, provider.codeVerifier(), alice.password);

    const output = system.output;
    const stopped = await system.stop(); // the audit trail closes (last batch, checkpoint), shutdownAzureMonitor flushes the spans
    system = undefined;
    assert.equal(stopped, true, output());
  });

  after(async () => {
    if (system && system.child.exitCode === null && system.child.signalCode === null) await system.stop();
    ingestion?.closeAllConnections();
    ingestion?.close();
    proxy?.closeAllConnections();
    proxy?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a request to an OAuth endpoint arrives as a Request envelope with the route name', () => {
    assert.ok(paths.every((path) => path === '/v2.1/track'), `ingestion paths: ${paths.join(', ')}`);
    const request = envelopes.find(
      (e) => e.data.baseType === 'RequestData' && e.data.baseData['name'] === 'GET /.well-known/oauth-authorization-server',
    );
    assert.ok(request, `no Request envelope among ${envelopes.map((e) => `${e.data.baseType}:${String(e.data.baseData['name'])}`).join(', ')}`);
    assert.equal(request.data.baseData['responseCode'], '200');
    assert.equal(request.tags?.['ai.cloud.role'], 'mcp-entra-gateway');
  });

  it('every audit record arrives as a trace (MessageData): the chained line its message, the fields its customDimensions, and the messages pass `audit verify`', async () => {
    const audit = envelopes.filter((e) => e.data.baseType === 'MessageData' && e.data.baseData.properties?.['event.name'] !== undefined);
    const records = audit.map((e) => ({ envelope: e, record: JSON.parse(String(e.data.baseData['message'])) as Record<string, unknown> }));
    records.sort((a, b) => Number(a.record['seq']) - Number(b.record['seq']));
    const names = records.map((r) => r.record['event.name']);
    for (const name of ['gateway.consent', 'gateway.sign_in', 'gateway.grant.issued', 'mcp.operation', 'audit.checkpoint']) {
      assert.ok(names.includes(name), `no ${name} among ${names.join(', ')}`);
    }

    const hello = records.find((r) => r.record['gen_ai.tool.name'] === 'hello_mcp');
    assert.ok(hello, 'the hello_mcp call is audited');
    const properties = hello.envelope.data.baseData.properties!;
    assert.equal(hello.envelope.name, 'Microsoft.ApplicationInsights.Message');
    assert.equal(hello.envelope.data.baseData['severityLevel'], 'Information');
    assert.equal(properties['event.name'], 'mcp.operation');
    assert.equal(properties['mcp.method.name'], 'tools/call');
    assert.equal(properties['gen_ai.tool.name'], 'hello_mcp');
    assert.equal(properties['mcp.backend'], 'snippets');
    assert.equal(properties['user.name'], 'alice');
    assert.equal(properties['gateway.policy.decision'], 'allowed');
    assert.match(properties['oauth.client.id'] ?? '', /^mcpgw_client_/);
    assert.equal(properties['seq'], String(hello.record['seq']));
    assert.equal(hello.record['http.response.status_code'], 200, 'fields Application Insights keeps out of customDimensions stay in the message');
    assert.equal(hello.record['error.type'], undefined);
    // The record's trace and client, in Application Insights' own columns.
    assert.equal(hello.envelope.tags?.['ai.operation.id'], hello.record['trace.id']);
    assert.equal(hello.envelope.tags?.['ai.operation.parentId'], hello.record['span.id']);
    assert.equal(hello.envelope.tags?.['ai.location.ip'], hello.record['client.address']);
    assert.equal(hello.envelope.tags?.['ai.user.authUserId'], hello.record['user.id']);
    assert.equal(hello.envelope.tags?.['ai.cloud.role'], 'mcp-entra-gateway');

    const missing = records.find((r) => r.record['gen_ai.tool.name'] === 'get_snippet');
    assert.equal(missing?.record['error.type'], 'tool_error');
    assert.equal(missing?.envelope.data.baseData.properties?.['user.name'], 'alice');

    // What Application Insights stored is the trail itself: one chain, nothing missing or altered.
    const file = join(dataDir, 'from-app-insights.jsonl');
    writeFileSync(file, `${records.map((r) => String(r.envelope.data.baseData['message'])).join('\n')}\n`);
    const report = await verifyAuditFile(file);
    assert.equal(report.problem, undefined);
    assert.equal(report.records, records.length);
    assert.equal(report.firstSeq, 1);
  });

  it('the exports themselves are not traced: no dependency for the ingestion requests', () => {
    const own = envelopes.filter((e) => e.data.baseType === 'RemoteDependencyData' && String(e.data.baseData['name']).includes('/v2.1/track'));
    assert.deepEqual(own.map((e) => e.data.baseData['name']), []);
  });

  it('with Statsbeat, SDK stats and Live Metrics off, nothing leaves loopback but the exporter settings poll (which has no switch)', () => {
    assert.deepEqual(
      tunnels.filter((tunnel) => tunnel !== 'settings.sdk.monitor.azure.com:443'),
      [],
    );
  });

  it('no token, code, verifier or password reaches the ingestion endpoint', () => {
    assert.ok(bodies.length > 0);
    for (const secret of secrets) {
      assert.ok(secret.length >= 8);
      assert.ok(!bodies.some((body) => body.includes(secret)), `a secret (${secret.slice(0, 6)}…) was sent to Application Insights`);
    }
  });
});
