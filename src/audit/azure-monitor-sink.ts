import { type AzureMonitorExporterOptions, AzureMonitorLogExporter } from '@azure/monitor-opentelemetry-exporter';
import { logRecordSink } from './log-record-sink.ts';
import type { AuditSink } from './sinks.ts';

/** One request to the ingestion endpoint may take this long before it counts as failed (per attempt). */
const EXPORT_TIMEOUT_MS = 10_000;

type PipelinePolicy = NonNullable<AzureMonitorExporterOptions['additionalPolicies']>[number]['policy'];

/**
 * Audit records to Application Insights: the same log records as the OTLP sink
 * (log-record-sink.ts), sent by the Azure Monitor exporter's AzureMonitorLogExporter to the
 * connection string's ingestion endpoint (Breeze `/v2.1/track`). Each arrives as a trace
 * (MessageData: `traces` / AppTraces): the chained line is its message, the fields its
 * customDimensions, the record's trace its operation id; `client.address` also fills the
 * client IP, `user.id` the authenticated user id.
 *
 * The exporter's offline storage (a second queue, on disk) is off, and with it off the exporter
 * reports a failed send as a success; so the outcome of each write is read from the ingestion
 * answer itself (a pipeline policy): anything but 200 (a refusal, a partial acceptance, an
 * unreachable or hung endpoint after the pipeline's retries) fails the write, and the trail counts
 * its records as dropped.
 */
export function azureMonitorSink(connectionString: string, env: Record<string, string | undefined>): AuditSink {
  let failure: Error | undefined;
  const ingestionOutcome: PipelinePolicy = {
    name: 'auditIngestionOutcome',
    async sendRequest(request, next) {
      // A hung endpoint fails the attempt instead of holding the trail forever.
      request.timeout = EXPORT_TIMEOUT_MS;
      try {
        const response = await next(request);
        // Breeze track: 200 all items accepted; 206 some refused; anything else none.
        failure = response.status === 200 ? undefined : new Error(`Application Insights ingestion answered ${response.status}: ${response.bodyAsText ?? ''}`.trim());
        return response;
      } catch (error) {
        failure = error instanceof Error ? error : new Error(String(error));
        throw error;
      }
    },
  };
  let exporting: AzureMonitorLogExporter;
  try {
    exporting = new AzureMonitorLogExporter({
      connectionString,
      disableOfflineStorage: true,
      additionalPolicies: [{ policy: ingestionOutcome, position: 'perRetry' }],
    });
  } catch (error) {
    throw new Error(`audit.azureMonitor.connectionString: ${(error as Error).message}`);
  }
  const sink = logRecordSink(exporting, env, (record) => {
    const extra: Record<string, string> = {};
    // The exporter's log mapping: microsoft.client.ip → ai.location.ip, enduser.id → ai.user.authUserId.
    if (typeof record['client.address'] === 'string') extra['microsoft.client.ip'] = record['client.address'];
    if (typeof record['user.id'] === 'string') extra['enduser.id'] = record['user.id'];
    return extra;
  });
  return {
    async write(lines) {
      // The trail writes one batch at a time: the answer seen during this export is this batch's.
      failure = undefined;
      await sink.write(lines);
      if (failure) throw failure;
    },
    close: () => sink.close(),
  };
}
