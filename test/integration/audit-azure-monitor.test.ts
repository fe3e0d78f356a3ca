import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import { type AuditConfig, createAudit } from '../../src/audit/audit.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { freePort } from '../support/ports.ts';

const SIGNING_KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const IKEY = '00000000-0000-0000-0000-000000000000';

function config(overrides: Partial<AuditConfig>): AuditConfig {
  return {
    sink: 'azure-monitor',
    file: { path: 'unused.jsonl', maxBytes: 1 << 20, maxFiles: 1 },
    arguments: 'hash',
    redact: [],
    checkpointSeconds: 3600,
    queueMax: 8,
    ...overrides,
  };
}

/** A pino logger whose lines are kept. */
function keptLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('audit trail to Application Insights: `azure-monitor` sink (the records themselves: test/e2e/telemetry-azure-monitor.test.ts)', () => {
  it('an unreachable ingestion endpoint never holds up record(): what does not fit the queue is dropped at once, the failed batch after, each counted and logged', async () => {
    // A port nobody listens on: every send is refused (after the pipeline's retries).
    const endpoint = `https://127.0.0.1:${await freePort()}/`;
    const { logger, lines } = keptLogger();
    const audit = await createAudit(config({ azureMonitor: { connectionString: `InstrumentationKey=${IKEY};IngestionEndpoint=${endpoint}` } }), {
      signingKeyPem: SIGNING_KEY,
      clock: systemClock,
      logger,
      env: {},
    });
    try {
      const started = performance.now();
      for (let i = 0; i < 20; i++) audit.record({ 'event.name': 'test.event', 'user.name': 'alice', n: i });
      const elapsedMs = performance.now() - started;
      // Synchronous either way; a send in record() would take the pipeline's retries (seconds). Loose bound: CPU is shared.
      assert.ok(elapsedMs < 1000, `20 records took ${elapsedMs} ms`);
      assert.deepEqual(audit.stats(), { written: 0, dropped: 12, queued: 8 });
      await audit.flush();
      // The 8 queued ones (and the `audit.dropped` record reporting the 12) were sent and refused: dropped too.
      assert.deepEqual(audit.stats(), { written: 0, dropped: 21, queued: 0 });
      const failed = lines.find((l) => l['msg'] === 'audit sink failed; records lost');
      assert.equal(failed?.['lost'], 9);
      assert.match(String((failed?.['err'] as { message?: string })?.message), /ECONNREFUSED/);
      assert.ok(lines.some((l) => l['msg'] === 'audit records dropped: the audit sink is slow or down'));
    } finally {
      await audit.close();
    }
  });

  it('without a connection string (neither audit.azureMonitor.connectionString nor APPLICATIONINSIGHTS_CONNECTION_STRING) or with one naming no valid key, the start fails naming the key', async () => {
    const deps = { signingKeyPem: SIGNING_KEY, clock: systemClock, logger: pino({ level: 'silent' }) };
    await assert.rejects(createAudit(config({}), { ...deps, env: {} }), {
      message: 'audit.azureMonitor.connectionString: required by audit.sink azure-monitor (or set APPLICATIONINSIGHTS_CONNECTION_STRING)',
    });
    await assert.rejects(createAudit(config({ azureMonitor: { connectionString: 'IngestionEndpoint=https://127.0.0.1:9/' } }), { ...deps, env: {} }), {
      message: 'audit.azureMonitor.connectionString: No instrumentation key or connection string was provided to the Azure Monitor Exporter',
    });
    await assert.rejects(createAudit(config({}), { ...deps, env: { APPLICATIONINSIGHTS_CONNECTION_STRING: 'InstrumentationKey=not-a-key' } }), {
      message: 'audit.azureMonitor.connectionString: Invalid instrumentation key was provided to the Azure Monitor Exporter',
    });
  });
});
