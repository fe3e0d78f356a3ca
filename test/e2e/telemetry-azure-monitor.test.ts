import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { type StartedSystem, startSystem } from '../support/child-system.ts';
import { freePort } from '../support/ports.ts';
import { selfSignedCertificate } from '../support/tls.ts';

/** Application Insights ingestion (Breeze v2.1 track): a JSON array of envelopes, gzipped. */
interface Envelope {
  name: string;
  data: { baseType: string; baseData: Record<string, unknown> };
  tags?: Record<string, string>;
}

describe('Azure Monitor: with an Application Insights connection string, spans go to its ingestion endpoint', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mcpgw-azmon-'));
  const envelopes: Envelope[] = [];
  const paths: string[] = [];
  let ingestion: Server | undefined;
  let system: StartedSystem | undefined;
  after(async () => {
    if (system && system.child.exitCode === null && system.child.signalCode === null) await system.stop();
    ingestion?.closeAllConnections();
    ingestion?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a request to an OAuth endpoint arrives at a loopback ingestion endpoint as a Request envelope with the route name', async () => {
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
        envelopes.push(...(JSON.parse(text) as Envelope[]));
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ itemsReceived: 1, itemsAccepted: 1, errors: [] }));
      });
    });
    await new Promise<void>((resolve) => ingestion!.listen(0, '127.0.0.1', resolve));
    const endpoint = `https://127.0.0.1:${(ingestion.address() as AddressInfo).port}/`;
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    system = await startSystem(
      ['--port', String(ports[0]), '--idp-port', String(ports[1]), '--snippets-port', String(ports[2]), '--admin-port', String(ports[3]), '--data', dataDir],
      60_000,
      {
        APPLICATIONINSIGHTS_CONNECTION_STRING: `InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=${endpoint}`,
        // Only loopback: no statsbeat to Microsoft's endpoints; a platform named so the VM detector does not probe IMDS.
        APPLICATIONINSIGHTS_STATSBEAT_DISABLED: 'true',
        APPLICATIONINSIGHTS_SDKSTATS_DISABLED: 'true',
        CONTAINER_APP_NAME: 'mcp-entra-gateway-test',
        CONTAINER_APP_REPLICA_NAME: 'replica-1',
        NODE_EXTRA_CA_CERTS: caFile,
        // A stray OTLP endpoint in the environment is not a second SDK: Azure Monitor wins.
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
      },
    );
    const metadata = await fetch(`http://localhost:${ports[0]}/.well-known/oauth-authorization-server`);
    assert.equal(metadata.status, 200);
    const output = system.output;
    const stopped = await system.stop(); // shutdownAzureMonitor flushes the spans
    system = undefined;
    assert.equal(stopped, true, output());

    assert.ok(paths.every((path) => path === '/v2.1/track'), `ingestion paths: ${paths.join(', ')}`);
    const request = envelopes.find(
      (e) => e.data.baseType === 'RequestData' && e.data.baseData['name'] === 'GET /.well-known/oauth-authorization-server',
    );
    assert.ok(request, `no Request envelope among ${envelopes.map((e) => `${e.data.baseType}:${String(e.data.baseData['name'])}`).join(', ')}`);
    assert.equal(request.data.baseData['responseCode'], '200');
    assert.equal(request.tags?.['ai.cloud.role'], 'mcp-entra-gateway');
  });
});
