import type { LogRecordExporter } from '@opentelemetry/sdk-logs';
import { logRecordSink } from './log-record-sink.ts';
import type { AuditSink } from './sinks.ts';

/**
 * The OTLP log exporter of OTEL_EXPORTER_OTLP_LOGS_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL
 * (OpenTelemetry SDK environment variables spec; default http/protobuf), as NodeSDK picks it, sent
 * to OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/logs over HTTP), else
 * the exporter's default (localhost:4318 / 4317). Headers and timeout: the exporter's own variables.
 */
async function otlpLogExporter(env: Record<string, string | undefined>): Promise<LogRecordExporter> {
  const protocol = (env['OTEL_EXPORTER_OTLP_LOGS_PROTOCOL'] ?? env['OTEL_EXPORTER_OTLP_PROTOCOL'])?.trim() || 'http/protobuf';
  // OTLP exporter spec §Endpoint URLs for OTLP/HTTP: the signal's variable is used as is, the base one gets /v1/logs.
  const logsEndpoint = env['OTEL_EXPORTER_OTLP_LOGS_ENDPOINT']?.trim();
  const baseEndpoint = env['OTEL_EXPORTER_OTLP_ENDPOINT']?.trim();
  const httpUrl = logsEndpoint || (baseEndpoint ? `${baseEndpoint.replace(/\/$/, '')}/v1/logs` : undefined);
  const http = httpUrl ? { url: httpUrl } : {};
  switch (protocol) {
    case 'http/json':
      return new (await import('@opentelemetry/exporter-logs-otlp-http')).OTLPLogExporter(http);
    case 'http/protobuf':
      return new (await import('@opentelemetry/exporter-logs-otlp-proto')).OTLPLogExporter(http);
    case 'grpc': {
      const url = logsEndpoint || baseEndpoint;
      return new (await import('@opentelemetry/exporter-logs-otlp-grpc')).OTLPLogExporter(url ? { url } : {});
    }
    default:
      throw new Error(`audit.sink otlp: OTEL_EXPORTER_OTLP_LOGS_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL "${protocol}" is not grpc, http/protobuf or http/json`);
  }
}

/**
 * Audit records as OpenTelemetry log records (log-record-sink.ts), exported over OTLP. A slow
 * collector backs up the trail's bounded queue; a failed export counts its records as dropped.
 */
export async function otlpSink(env: Record<string, string | undefined>): Promise<AuditSink> {
  return logRecordSink(await otlpLogExporter(env), env);
}
