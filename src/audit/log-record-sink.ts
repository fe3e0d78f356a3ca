import { context as otelContext, ROOT_CONTEXT, TraceFlags, trace } from '@opentelemetry/api';
import { ExportResultCode, suppressTracing } from '@opentelemetry/core';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { LoggerProvider, type LogRecordExporter, type LogRecordProcessor, type SdkLogRecord } from '@opentelemetry/sdk-logs';
import { DEFAULT_SERVICE_NAME, isServiceNamed, SCOPE_NAME } from '../telemetry/sdk.ts';
import type { AuditSink } from './sinks.ts';

/** OpenTelemetry logs data model §SeverityNumber: INFO. */
const SEVERITY_INFO = 9;

type Attributes = Record<string, string | number | boolean>;

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
 * Audit records as OpenTelemetry log records, handed to `exporting` (OTLP, Azure Monitor): the
 * record's fields are the log record's attributes, `event.name` its event name, `time` its
 * timestamp, `trace.id`/`span.id` its trace context (logs data model §Trace Context Fields), and
 * the chained JSON line its body (so `audit verify` can still check what the backend stored).
 * One export per batch the trail writes; `write` resolves when the export succeeded and rejects
 * when it failed (the trail then counts the records as dropped), so a slow backend backs up the
 * trail's bounded queue instead of a queue of the SDK's own. `extraAttributes` adds what one
 * backend maps to its own fields. Resource: `service.name` (OTEL_SERVICE_NAME, else
 * DEFAULT_SERVICE_NAME) and OTEL_RESOURCE_ATTRIBUTES.
 */
export function logRecordSink(
  exporting: LogRecordExporter,
  env: Record<string, string | undefined>,
  extraAttributes: (record: Record<string, unknown>) => Attributes = () => ({}),
): AuditSink {
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
        const attributes: Attributes = {};
        for (const [name, value] of Object.entries(record)) {
          if (value === undefined || value === null || name === 'time' || name === 'trace.id' || name === 'span.id') continue;
          attributes[name] = typeof value === 'object' ? JSON.stringify(value) : (value as string | number | boolean);
        }
        Object.assign(attributes, extraAttributes(record));
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
      // The trail drains in the context of the request whose record started it: export outside any
      // trace, with tracing suppressed, so the export's own HTTP calls are never spans (under that request or alone).
      await otelContext.with(
        suppressTracing(ROOT_CONTEXT),
        () =>
          new Promise<void>((resolve, reject) => {
            exporting.export(records, (result) =>
              result.code === ExportResultCode.SUCCESS ? resolve() : reject(result.error ?? new Error('log export failed')),
            );
          }),
      );
    },
    async close() {
      await provider.shutdown();
      await exporting.shutdown();
    },
  };
}
