import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { propagation } from '@opentelemetry/api';
import { CompositePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { B3Propagator } from '@opentelemetry/propagator-b3';
import { BasicTracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { startServerSpan } from './telemetry-hook.ts';

// OTEL_PROPAGATORS=tracecontext,b3 as the SDK would set it: B3's fields() name only `b3`, but it reads `x-b3-*` too.
propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new B3Propagator()] }));
const tracer = new BasicTracerProvider().getTracer('test');
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';

function parentOf(headers: Record<string, string>, meta?: unknown): { traceId: string; parentSpanId: string | undefined } {
  const { server } = startServerSpan(tracer, { 'mcp.method.name': 'tools/list' }, meta, headers);
  server.end();
  return { traceId: server.spanContext().traceId, parentSpanId: (server as unknown as ReadableSpan).parentSpanContext?.spanId };
}

describe('the SERVER span continues the caller’s trace, whatever propagator reads it', () => {
  it('W3C traceparent', () => {
    assert.deepEqual(parentOf({ traceparent: `00-${TRACE_ID}-${SPAN_ID}-01` }), { traceId: TRACE_ID, parentSpanId: SPAN_ID });
  });

  it('B3 multi headers, which B3Propagator reads but does not name in fields()', () => {
    assert.deepEqual(parentOf({ 'x-b3-traceid': TRACE_ID, 'x-b3-spanid': SPAN_ID, 'x-b3-sampled': '1' }), { traceId: TRACE_ID, parentSpanId: SPAN_ID });
  });

  it('params._meta.traceparent (a 2026-07-28 request) wins over the headers', () => {
    const other = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
    const meta = { traceparent: `00-${other}-${SPAN_ID}-01` };
    assert.deepEqual(parentOf({ traceparent: `00-${TRACE_ID}-${SPAN_ID}-01` }, meta), { traceId: other, parentSpanId: SPAN_ID });
  });

  it('no context: a new trace', () => {
    const { traceId, parentSpanId } = parentOf({ accept: 'application/json' });
    assert.equal(parentSpanId, undefined);
    assert.notEqual(traceId, TRACE_ID);
  });
});
