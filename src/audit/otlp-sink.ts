import { ROOT_CONTEXT, TraceFlags, trace } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { LoggerProvider, type LogRecordExporter, type LogRecordProcessor, type SdkLogRecord } from '@opentelemetry/sdk-logs';
import { DEFAULT_SERVICE_NAME, isServiceNamed, SCOPE_NAME } from '../telemetry/sdk.ts';
import type { AuditSink } from './sinks.ts';

/** OpenTelemetry logs data model §SeverityNumber: INFO. */
const SEVERITY_INFO = 9;

/** Hands the records emitted during one `write` to that write (the exporter is called there, not by a batch of its own). */
class Collected implements LogRecordProcessor {
  records: SdkLogRecord[] = [];
  onEmit(record: SdkLogRecord): void {
    this.records.push(record);
  }
  take(): SdkLogRecord[] {
    const taken = this.records;
    this.records = [];
    return taken;
  }
  async forceFlush(): Promise<void> {}
  async shutdown(): Promise<void> {}
}

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
 * Audit records as OpenTelemetry log records, exported over OTLP: the record's fields are the log
 * record's attributes, `event.name` its event name, `time` its timestamp, `trace.id`/`span.id` its
 * trace context (logs data model §Trace Context Fields), and the chained JSON line its body (so
 * `audit verify` can still check what a collector stored). One export per batch the trail writes;
 * `write` resolves when the collector accepted it and rejects when the export failed (the trail
 * then counts the records as dropped), so a slow collector backs up the trail's bounded queue.
 */
export async function otlpSink(env: Record<string, string | undefined>): Promise<AuditSink> {
  const exporting = await otlpLogExporter(env);
  const collected = new Collected();
  const named = detectResources({ detectors: [envDetector] });
  const resource = defaultResource()
    .merge(isServiceNamed(env) ? null : resourceFromAttributes({ 'service.name': DEFAULT_SERVICE_NAME }))
    .merge(named);
  const provider = new LoggerProvider({ resource, processors: [collected] });
  const logger = provider.getLogger(SCOPE_NAME);
  return {
    async write(lines) {
      for (const line of lines) {
        const record = JSON.parse(line) as Record<string, unknown>;
        const attributes: Record<string, string | number | boolean | string[]> = {};
        for (const [name, value] of Object.entries(record)) {
          if (value === undefined || value === null || name === 'time' || name === 'trace.id' || name === 'span.id') continue;
          attributes[name] = typeof value === 'object' ? JSON.stringify(value) : (value as string | number | boolean);
        }
        const traceId = record['trace.id'];
        const spanId = record['span.id'];
        const context =
          typeof traceId === 'string' && typeof spanId === 'string'
            ? trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId, traceFlags: TraceFlags.SAMPLED })
            : ROOT_CONTEXT;
        logger.emit({
          eventName: String(record['event.name']),
          timestamp: typeof record['time'] === 'string' ? new Date(record['time']) : undefined,
          severityNumber: SEVERITY_INFO,
          severityText: 'INFO',
          body: line,
          attributes,
          context,
        });
      }
      const records = collected.take();
      await new Promise<void>((resolve, reject) => {
        exporting.export(records, (result) =>
          result.code === ExportResultCode.SUCCESS ? resolve() : reject(result.error ?? new Error('OTLP log export failed')),
        );
      });
    },
    async close() {
      await provider.shutdown();
      await exporting.shutdown();
    },
  };
}
