import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { ExportResultCode } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ProtobufSpanExporter, wantsProtobufSpans } from './span-exporter.ts';

describe('ProtobufSpanExporter: OTLP/HTTP protobuf with our body writer', () => {
  const received: { url: string; headers: IncomingHttpHeaders; body: Buffer }[] = [];
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({ url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  after(() => receiver.close());

  it('posts the spans to <OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces with the headers the variables set, the body as the library writes it', async () => {
    receiver.listen(0, '127.0.0.1');
    await once(receiver, 'listening');
    const saved = { ...process.env };
    process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    process.env['OTEL_EXPORTER_OTLP_HEADERS'] = 'x-tenant=blue';
    const exporter = new ProtobufSpanExporter();
    process.env = saved;
    const spans = new InMemorySpanExporter();
    const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }).getTracer('t');
    tracer.startSpan('tools/call hello_mcp', { attributes: { 'gen_ai.tool.name': 'hello_mcp' } }).end();
    const finished = spans.getFinishedSpans();
    const result = await new Promise<{ code: ExportResultCode }>((resolve) => exporter.export(finished, resolve));
    await exporter.shutdown();
    assert.equal(result.code, ExportResultCode.SUCCESS);
    assert.equal(received.length, 1);
    assert.equal(received[0]!.url, '/v1/traces');
    assert.equal(received[0]!.headers['content-type'], 'application/x-protobuf');
    assert.equal(received[0]!.headers['x-tenant'], 'blue');
    assert.ok(received[0]!.body.equals(Buffer.from(ProtobufTraceSerializer.serializeRequest(finished)!)));
  });

  it('is used for OTLP over http/protobuf only (the default); other protocols and exporters are the SDK’s', () => {
    assert.equal(wantsProtobufSpans({}), true);
    assert.equal(wantsProtobufSpans({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' }), true);
    assert.equal(wantsProtobufSpans({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }), false);
    assert.equal(wantsProtobufSpans({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' }), true);
    assert.equal(wantsProtobufSpans({ OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc' }), false);
    assert.equal(wantsProtobufSpans({ OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: '', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), false);
    assert.equal(wantsProtobufSpans({ OTEL_TRACES_EXPORTER: 'otlp,console' }), false);
    assert.equal(wantsProtobufSpans({ OTEL_TRACES_EXPORTER: 'zipkin' }), false);
  });
});
