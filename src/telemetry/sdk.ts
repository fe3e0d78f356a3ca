import { type MeterProvider, metrics, type Tracer, trace } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import {
  AggregationTemporality,
  AggregationType,
  type IMetricReader,
  InstrumentType,
  type PushMetricExporter,
  MeterProvider as SdkMeterProvider,
} from '@opentelemetry/sdk-metrics';

/** The instrumentation scope of every span and instrument the gateway makes. */
export const SCOPE_NAME = 'mcp-entra-gateway';
/** `service.name` when OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) does not name one. */
export const DEFAULT_SERVICE_NAME = 'mcp-entra-gateway';

/** Whether OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES names the service (else DEFAULT_SERVICE_NAME). */
export function isServiceNamed(env: Record<string, string | undefined>): boolean {
  return Boolean(env['OTEL_SERVICE_NAME']) || /\bservice\.name=/.test(env['OTEL_RESOURCE_ATTRIBUTES'] ?? '');
}

/** Where telemetry goes, read from the standard environment variables (docs/configuration.md, Telemetry). */
export type TelemetryExport = { kind: 'off' } | { kind: 'otlp' } | { kind: 'azure-monitor'; connectionString: string };

export interface Telemetry {
  /**
   * The gateway's instruments are made here; /metrics (Prometheus) reads them, and OTLP or Azure
   * Monitor when on (with OTLP's cumulative default, /metrics reads the OTLP reader: servesPrometheus).
   */
  meterProvider: MeterProvider;
  /** The Prometheus text (format 0.0.4) of every instrument, as /metrics answers. */
  scrape(): Promise<string>;
  /** Undefined when no SDK exports spans: then no span, attribute or context is ever made per call. */
  tracer: Tracer | undefined;
  shutdown(): Promise<void>;
}

/**
 * One SDK, chosen once: Azure Monitor when an Application Insights connection string is set,
 * else OTLP when an OTLP endpoint or a traces exporter is set (OpenTelemetry SDK environment
 * variables spec), else none. `OTEL_SDK_DISABLED=true` turns both off.
 */
export function telemetryExport(env: Record<string, string | undefined>): TelemetryExport {
  if (env['OTEL_SDK_DISABLED']?.trim().toLowerCase() === 'true') return { kind: 'off' };
  const connectionString = env['APPLICATIONINSIGHTS_CONNECTION_STRING']?.trim();
  if (connectionString) return { kind: 'azure-monitor', connectionString };
  const tracesExporter = env['OTEL_TRACES_EXPORTER']?.trim();
  if (tracesExporter === 'none') return { kind: 'off' };
  if (tracesExporter || env['OTEL_EXPORTER_OTLP_ENDPOINT']?.trim() || env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']?.trim()) return { kind: 'otlp' };
  return { kind: 'off' };
}

function prometheusReader(): PrometheusExporter {
  // Scraped through the admin listener's /metrics; names as they were with prom-client (no scope label, no target_info).
  return new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true, withoutTargetInfo: true });
}

const serializer = new PrometheusSerializer('', false, undefined, true, true);

/** /metrics from `reader`'s collection (no server of its own). */
function scraper(reader: IMetricReader): () => Promise<string> {
  return async () => serializer.serialize((await reader.collect()).resourceMetrics);
}

/**
 * Whether the OTLP metrics reader can also serve /metrics: when it keeps cumulative sums and the
 * default aggregations, its collection is what a Prometheus reader's would be (collecting it
 * more often changes nothing it exports). Then every recording is kept once, not once per reader
 * (the SDK hashes a measurement's attributes for each reader; benchmark 1, tracing variants).
 * A delta or low-memory temporality preference, or exponential histograms, keep a reader of their own.
 */
export function servesPrometheus(exporter: Pick<PushMetricExporter, 'selectAggregationTemporality' | 'selectAggregation'>): boolean {
  return Object.values(InstrumentType).every(
    (type) =>
      (exporter.selectAggregationTemporality?.(type) ?? AggregationTemporality.CUMULATIVE) === AggregationTemporality.CUMULATIVE &&
      (exporter.selectAggregation?.(type).type ?? AggregationType.DEFAULT) === AggregationType.DEFAULT,
  );
}

/** Metrics for /metrics only, no SDK: what every gateway without telemetry export (and every test gateway) uses. */
export function localTelemetry(): Telemetry {
  const prometheus = prometheusReader();
  const meterProvider = new SdkMeterProvider({ readers: [prometheus] });
  return { meterProvider, scrape: scraper(prometheus), tracer: undefined, shutdown: () => meterProvider.shutdown() };
}

/**
 * Starts the one process-wide SDK `exported` asks for, loaded only then (a dynamic import: a
 * gateway without telemetry loads neither SDK). The SDK's MeterProvider also feeds /metrics.
 */
export async function startTelemetry(exported: TelemetryExport, env: Record<string, string | undefined>): Promise<Telemetry> {
  if (exported.kind === 'off') return localTelemetry();
  const serviceName = isServiceNamed(env) ? undefined : DEFAULT_SERVICE_NAME;
  if (exported.kind === 'azure-monitor') {
    const prometheus = prometheusReader();
    const { useAzureMonitor, shutdownAzureMonitor } = await import('@azure/monitor-opentelemetry');
    const { resourceFromAttributes } = await import('@opentelemetry/resources');
    useAzureMonitor({
      azureMonitorExporterOptions: { connectionString: exported.connectionString },
      metricReaders: [prometheus],
      ...(serviceName ? { resource: resourceFromAttributes({ 'service.name': serviceName }) } : {}),
      // The gateway makes its own spans (MCP conventions); the distro's HTTP instrumentation would duplicate them.
      instrumentationOptions: { http: { enabled: false } },
      // Live Metrics, Statsbeat and the exporter's settings poll keep their defaults; their switches are
      // environment variables the distro reads itself (docs/configuration.md, Audit records to Application Insights).
    });
    return started(prometheus, shutdownAzureMonitor);
  }
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const metricReaders: IMetricReader[] = [];
  let scraped: IMetricReader | undefined;
  // OTEL_METRICS_EXPORTER (default otlp): NodeSDK reads it only when given no readers, so the OTLP reader is built as it would.
  const metricsExporters = (env['OTEL_METRICS_EXPORTER'] ?? 'otlp').split(',').map((name) => name.trim());
  if (metricsExporters.includes('otlp') && !metricsExporters.includes('none')) {
    // sdk-node's own env helpers (build/src/utils, not re-exported by its entry point): the reader NodeSDK would build.
    const utils: OtlpMetricsFromEnv = await import('@opentelemetry/sdk-node/build/src/utils.js');
    const exporter = utils.getOtlpMetricExporterFromEnv();
    const reader = utils.getPeriodicExportingMetricReaderFromEnv(exporter);
    metricReaders.push(reader);
    if (servesPrometheus(exporter)) scraped = reader;
  }
  if (scraped === undefined) {
    scraped = prometheusReader();
    metricReaders.unshift(scraped);
  }
  // Spans in OTLP protobuf (the default) with our body writer (span-exporter.ts); other exporters as the SDK builds them from the environment.
  const spans = await import('./span-exporter.ts');
  const traceExporter = spans.wantsProtobufSpans(env) ? new spans.ProtobufSpanExporter() : undefined;
  const sdk = new NodeSDK({ metricReaders, instrumentations: [], ...(traceExporter ? { traceExporter } : {}), ...(serviceName ? { serviceName } : {}) });
  sdk.start();
  return started(scraped, () => sdk.shutdown());
}

interface OtlpMetricsFromEnv {
  getOtlpMetricExporterFromEnv(): PushMetricExporter;
  getPeriodicExportingMetricReaderFromEnv(exporter: PushMetricExporter): IMetricReader;
}

function started(scraped: IMetricReader, shutdown: () => Promise<void>): Telemetry {
  return { meterProvider: metrics.getMeterProvider(), scrape: scraper(scraped), tracer: trace.getTracer(SCOPE_NAME), shutdown };
}
