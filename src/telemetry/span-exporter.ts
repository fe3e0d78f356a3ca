import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { ProtobufTraceSerializer, TraceExporterMetricsHelper } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { serializeSpans } from './otlp-spans.ts';

/**
 * The OTLP/HTTP protobuf span exporter, as @opentelemetry/exporter-trace-otlp-proto builds it
 * (endpoint, headers, timeout, compression, retries from the OTEL_EXPORTER_OTLP_* variables, by
 * the library's own delegate), with the request body written by serializeSpans.
 */
export class ProtobufSpanExporter extends OTLPExporterBase<ReadableSpan[]> implements SpanExporter {
  constructor() {
    super(
      createOtlpHttpExportDelegate(
        convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', { 'Content-Type': 'application/x-protobuf' }),
        { serializeRequest: serializeSpans, deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data) },
        'otlp_http_span_exporter',
        TraceExporterMetricsHelper,
        undefined,
      ),
    );
  }
}

/**
 * Whether the environment asks for what ProtobufSpanExporter is: OTLP spans over HTTP in protobuf
 * (OTEL_TRACES_EXPORTER unset or `otlp`, the traces protocol `http/protobuf`, the default).
 * Anything else (http/json, grpc, several exporters) is left to the SDK.
 */
export function wantsProtobufSpans(env: Record<string, string | undefined>): boolean {
  const exporters = env['OTEL_TRACES_EXPORTER']?.trim();
  if (exporters && exporters !== 'otlp') return false;
  // An empty variable counts as unset, as the SDK reads them (getStringFromEnv).
  const protocol = env['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL']?.trim() || env['OTEL_EXPORTER_OTLP_PROTOCOL']?.trim() || 'http/protobuf';
  return protocol === 'http/protobuf';
}
