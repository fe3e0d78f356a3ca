import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pino from 'pino';
import { stalledSocket } from '../../test/support/stalled-socket.ts';
import { systemClock } from '../ports/clock.ts';
import { auditArguments, canonicalJson } from './arguments.ts';
import { type AuditConfig, createAudit, isoTime } from './audit.ts';
import { streamSink } from './sinks.ts';
import { verifyAuditFile } from './verify.ts';

const SIGNING_KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const CONFIG: AuditConfig = {
  sink: 'file',
  file: { path: '', maxBytes: 10 * 1024 * 1024, maxFiles: 2 },
  arguments: 'hash',
  redact: [],
  checkpointSeconds: 3600,
  queueMax: 100,
};

describe('audit arguments', () => {
  const args = { snippetname: 'hello', snippet: 'print(1)', options: { apiKey: 'k-123', tags: [{ body: 'x', token: 't' }] } };
  const cases: [string, Parameters<typeof auditArguments>, unknown][] = [
    ['off writes nothing', ['off', args], undefined],
    ['hash is the SHA-256 of the canonical JSON, key order aside', ['hash', { b: 1, a: [2, { d: 3, c: 4 }] }], auditArguments('hash', { a: [2, { c: 4, d: 3 }], b: 1 })],
    [
      'redacted replaces the listed paths and secret-named keys',
      ['redacted', args, ['snippet', 'options.tags.*.body']],
      { snippetname: 'hello', snippet: '[redacted]', options: { apiKey: '[redacted]', tags: [{ body: '[redacted]', token: '[redacted]' }] } },
    ],
    ['full keeps values but never secret-named keys', ['full', args], { ...args, options: { apiKey: '[redacted]', tags: [{ body: 'x', token: '[redacted]' }] } }],
  ];
  for (const [name, input, expected] of cases) it(name, () => assert.deepEqual(auditArguments(...input), expected));

  it('hash has the sha256: form', () => assert.match(String(auditArguments('hash', args)), /^sha256:[A-Za-z0-9_-]{43}$/));
  it('canonical JSON sorts keys at every level', () => assert.equal(canonicalJson({ b: [{ z: 1, y: 2 }], a: null }), '{"a":null,"b":[{"y":2,"z":1}]}'));
});

describe('audit trail', () => {
  it('a file chain survives a restart: the second writer continues seq and prev, and verify passes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-'));
    const path = join(dir, 'audit.jsonl');
    try {
      for (const run of [1, 2]) {
        const audit = await createAudit({ ...CONFIG, file: { ...CONFIG.file, path } }, { signingKeyPem: SIGNING_KEY, clock: systemClock, logger: pino({ level: 'silent' }) });
        for (let i = 0; i < 3; i++) audit.record({ 'event.name': 'test.event', run, i });
        await audit.close();
      }
      const seqs = readFileSync(path, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
      assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8], 'three records and a checkpoint per run, one chain');
      const report = await verifyAuditFile(path);
      assert.equal(report.problem, undefined);
      assert.equal(report.checkpoints, 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a sink that stops reading never blocks record(): the queue stays bounded and drops are counted', async () => {
    const { socket, close } = await stalledSocket();
    const audit = await createAudit(CONFIG, { signingKeyPem: SIGNING_KEY, clock: systemClock, logger: pino({ level: 'silent' }), sink: streamSink(socket) });
    try {
      const filler = 'x'.repeat(4096);
      for (let round = 0; round < 50; round++) {
        for (let i = 0; i < 100; i++) assert.equal(audit.record({ 'event.name': 'test.event', filler }), undefined);
        await new Promise((resolve) => setImmediate(resolve));
      }
      const stats = audit.stats();
      assert.ok(stats.queued <= CONFIG.queueMax, `queued ${stats.queued}`);
      assert.ok(stats.dropped > 0, 'records beyond the bound are dropped');
      await audit.close(); // bounded, although the sink never drains
    } finally {
      close();
    }
  });
});

describe('isoTime', () => {
  it('writes what Date#toISOString writes, across seconds, for every width of milliseconds', () => {
    let now = Date.UTC(2026, 11, 4, 16, 39, 21, 0);
    const time = isoTime({ nowSeconds: () => Math.floor(now / 1000), nowMs: () => now });
    for (const step of [0, 5, 45, 900, 49, 1, 1000, 86_400_000 + 7, 999]) {
      now += step;
      assert.equal(time(), new Date(now).toISOString());
    }
    // A fractional clock (a test's fake one) is cut to the millisecond, as Date does.
    now += 0.75;
    assert.equal(time(), new Date(now).toISOString());
    for (const before of [-0.5, -1, -999.5, -1000, -1001]) {
      now = before;
      assert.equal(time(), new Date(now).toISOString());
    }
  });

  it('keeps six-digit years as Date does', () => {
    const at = Date.UTC(20000, 0, 1, 0, 0, 0, 12);
    assert.equal(isoTime({ nowSeconds: () => Math.floor(at / 1000), nowMs: () => at })(), '+020000-01-01T00:00:00.012Z');
  });
});
