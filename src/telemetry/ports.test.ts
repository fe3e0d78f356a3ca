import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { systemClock } from '../ports/clock.ts';
import { SqliteStore } from '../store/sqlite.ts';
import { traceStore } from './ports.ts';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer('test');
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

/** Runs `work` inside a request span, as an OAuth endpoint's handler runs; returns the Store spans made under it. */
async function underRequest(work: () => Promise<unknown>): Promise<{ request: ReadableSpan; calls: ReadableSpan[] }> {
  exporter.reset();
  const request = tracer.startSpan('POST /token', { kind: SpanKind.SERVER });
  await context.with(trace.setSpan(context.active(), request), work).catch(() => {});
  request.end();
  const spans = exporter.getFinishedSpans();
  return { request: spans.find((s) => s.name === 'POST /token')!, calls: spans.filter((s) => s.name !== 'POST /token') };
}

describe('traceStore: a CLIENT span per Store call under the request span (database client span conventions)', () => {
  const raw = SqliteStore.open({ path: ':memory:', clock: systemClock });
  const store = traceStore(raw, tracer, { system: 'redis', address: 'cache.internal', port: 6380 });
  after(() => raw.close());

  it('names each span by operation and key prefix, with db.system.name, db.operation.name, db.collection.name and the server; never the key', async () => {
    const { request, calls } = await underRequest(async () => {
      await store.set('grant:g-secret-id', { sub: 'alice' }, 60);
      await store.get('grant:g-secret-id');
      await store.take('code:c0de-hash');
      await store.addToSet('user-grants:tid|oid', 'g-secret-id');
      await store.members('user-grants:tid|oid');
      await store.increment('ratelimit:token:127.0.0.1:123', 60);
      await store.ping();
    });
    assert.deepEqual(
      calls.map((s) => [s.name, s.kind, s.parentSpanContext?.spanId, s.spanContext().traceId]),
      [
        ['set grant', SpanKind.CLIENT, request.spanContext().spanId, request.spanContext().traceId],
        ['get grant', SpanKind.CLIENT, request.spanContext().spanId, request.spanContext().traceId],
        ['take code', SpanKind.CLIENT, request.spanContext().spanId, request.spanContext().traceId],
        ['addToSet user-grants', SpanKind.CLIENT, request.spanContext().spanId, request.spanContext().traceId],
        ['members user-grants', SpanKind.CLIENT, request.spanContext().spanId, request.spanContext().traceId],
        ['increment ratelimit', SpanKind.CLIENT, request.spanContext().spanId, request.spanContext().traceId],
        ['ping', SpanKind.CLIENT, request.spanContext().spanId, request.spanContext().traceId],
      ],
    );
    assert.deepEqual(calls[2]!.attributes, {
      'db.system.name': 'redis',
      'server.address': 'cache.internal',
      'server.port': 6380,
      'db.operation.name': 'take',
      'db.collection.name': 'code',
    });
    assert.deepEqual(calls[6]!.attributes, { 'db.system.name': 'redis', 'server.address': 'cache.internal', 'server.port': 6380, 'db.operation.name': 'ping' });
    const everything = JSON.stringify(calls.map((s) => [s.name, s.attributes, s.events, s.status]));
    for (const part of ['g-secret-id', 'c0de-hash', 'tid|oid', '127.0.0.1']) assert.ok(!everything.includes(part), `${part} in a span`);
  });

  it('delete names a collection only when every key is of one kind; a key without a prefix names none', async () => {
    const { calls } = await underRequest(async () => {
      await store.delete('at:h1', 'at:h2');
      await store.delete('at:h1', 'rt:h2');
      await store.get('no-prefix-secret');
    });
    assert.deepEqual(
      calls.map((s) => [s.name, s.attributes['db.collection.name']]),
      [
        ['delete at', 'at'],
        ['delete', undefined],
        ['get', undefined],
      ],
    );
  });

  it('a failed call ends its span with error.type and status ERROR, and still rejects', async () => {
    const closed = SqliteStore.open({ path: ':memory:', clock: systemClock });
    await closed.close();
    const failing = traceStore(closed, tracer, { system: 'sqlite' });
    let rejected: unknown;
    const { calls } = await underRequest(() => failing.get('grant:x').catch((error: unknown) => (rejected = error)));
    assert.ok(rejected instanceof Error);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.name, 'get grant');
    assert.equal(calls[0]!.attributes['error.type'], (rejected as Error).name);
    assert.equal(calls[0]!.status.code, SpanStatusCode.ERROR);
  });

  it('a call outside any span makes no span (never a trace of its own)', async () => {
    exporter.reset();
    await store.set('client:c', { id: 'c' });
    assert.equal(await store.get('client:c') !== undefined, true);
    assert.deepEqual(exporter.getFinishedSpans(), []);
  });
});
