import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type HrTime, ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { serializeSpans } from './otlp-spans.ts';

/** Our bytes against the library's for the same spans. */
function assertSameBytes(spans: ReadableSpan[]): void {
  const ours = Buffer.from(serializeSpans(spans));
  const library = Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!);
  assert.equal(ours.length, library.length, 'length');
  assert.ok(ours.equals(library), `first difference at byte ${ours.findIndex((byte, i) => byte !== library[i])}`);
}

function recorder(resourceAttributes: Record<string, string>) {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes(resourceAttributes),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
    spanLimits: { attributeCountLimit: 200 },
  });
  return { exporter, provider };
}

describe('OTLP spans in protobuf: the same bytes as @opentelemetry/otlp-transformer', () => {
  it('SERVER and CLIENT spans of tool calls, as the gateway makes them', () => {
    const { exporter, provider } = recorder({ 'service.name': 'mcp-entra-gateway', 'service.instance.id': 'host/1' });
    const tracer = provider.getTracer('mcp-entra-gateway');
    for (let i = 0; i < 50; i++) {
      const server = tracer.startSpan('tools/call hello_mcp', { kind: SpanKind.SERVER });
      server.setAttributes({ 'mcp.method.name': 'tools/call', 'gen_ai.tool.name': 'hello_mcp', 'jsonrpc.request.id': String(i), 'mcp.session.id': 'a'.repeat(36) });
      const client = tracer.startSpan('tools/call hello_mcp', { kind: SpanKind.CLIENT, attributes: { 'server.port': 8080 } }, trace.setSpan(ROOT_CONTEXT, server));
      client.setAttribute('http.response.status_code', 200);
      client.end();
      if (i % 7 === 0) {
        server.setAttribute('error.type', 'tool_error');
        server.setStatus({ code: SpanStatusCode.ERROR });
      }
      server.end();
    }
    assertSameBytes(exporter.getFinishedSpans());
  });

  it('every attribute type, events, links, a status message, a remote parent with trace state, and lengths of 1–3 bytes', () => {
    const { exporter, provider } = recorder({ 'service.name': 'svc', 'deployment.environment.name': 'prodʼ' });
    const tracer = provider.getTracer('scope-a', '1.2.3');
    const other = provider.getTracer('scope-b');
    const remote = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
      traceState: new TraceState('vendor=value,other=x'),
    });
    const span = tracer.startSpan('operation ✓', { kind: SpanKind.CONSUMER }, remote);
    span.setAttributes({
      ascii: 'plain',
      unicode: 'héllo 🌍 ✓',
      lone: 'a\ud800b',
      long42: 'x'.repeat(42),
      long43: 'é'.repeat(43),
      long200: 'y'.repeat(200),
      long20000: 'z'.repeat(20_000),
      zero: 0,
      int: 127,
      int128: 128,
      negative: -1,
      negativeBig: -(2 ** 40) - 3,
      big32: 2 ** 32 + 5,
      big53: 2 ** 53 + 2,
      big62: 2 ** 62,
      tooBig: 2 ** 63,
      double: 3.25,
      nan: Number.NaN,
      bool: true,
      no: false,
      strings: ['a', 'b', 'ç'],
      numbers: [1, -2, 2.5],
      bools: [true, false],
      empty: [],
    });
    span.addEvent('first', { detail: 'x', count: 3 });
    span.addEvent('second');
    span.addLink({ context: { traceId: 'ff000000000000000000000000000001', spanId: '00000000000000aa', traceFlags: 0 }, attributes: { why: 'batch' } });
    span.addLink({ context: { traceId: 'ff000000000000000000000000000002', spanId: '00000000000000bb', traceFlags: 1, isRemote: true } });
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'it failed: ünïcode' });
    span.end();
    other.startSpan('internal').end();
    tracer.startSpan('unset kind').end();
    const second = recorder({ 'service.name': 'another' });
    second.provider.getTracer('scope-a').startSpan('from another resource').end();
    assertSameBytes([...exporter.getFinishedSpans(), ...second.exporter.getFinishedSpans()]);
  });

  it('times: fixed64 nanoseconds exact past 2^53', () => {
    const { exporter, provider } = recorder({ 'service.name': 'svc' });
    provider.getTracer('t').startSpan('s').end();
    const [made] = exporter.getFinishedSpans();
    const times: [HrTime, HrTime][] = [
      [
        [0, 0],
        [0, 1],
      ],
      [
        [1_764_000_000, 123_456_789],
        [1_764_000_000, 999_999_999],
      ],
      [
        [4_294_967_295, 999_999_999],
        [18_446_744_073, 709_551_615],
      ],
      [
        [65_535, 999_999_999],
        [65_536, 0],
      ],
    ];
    for (const [startTime, endTime] of times) {
      const span = { ...made!, spanContext: made!.spanContext, startTime, endTime } as ReadableSpan;
      assertSameBytes([span]);
    }
  });

  it('no spans: an empty request', () => {
    assert.equal(serializeSpans([]).length, 0);
    assert.equal(ProtobufTraceSerializer.serializeRequest([])!.length, 0);
  });
});
