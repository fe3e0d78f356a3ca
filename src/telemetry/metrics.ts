import type { Attributes, Histogram, MeterProvider } from '@opentelemetry/api';
import type { Audit } from '../audit/audit.ts';
import { SCOPE_NAME } from './sdk.ts';

/** OpenTelemetry MCP semantic conventions (gen-ai/mcp.md, Metrics): the operation duration histograms' buckets, seconds. */
export const MCP_DURATION_BUCKETS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300];
const HTTP_DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5];
const STORE_DURATION_BUCKETS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1];

/** How a bearer token was checked: from the in-memory cache, or read from the Store and found or not. */
export type TokenValidation = 'cached' | 'valid' | 'invalid';
const TOKEN_VALIDATIONS: readonly TokenValidation[] = ['cached', 'valid', 'invalid'];

/** One route's request counts by method and status, with the attribute sets they are exported with. */
interface RouteCounts {
  attributes: Attributes;
  byMethod: Map<string, Map<number, { value: number; attributes: Attributes }>>;
}

/**
 * Every instrument the gateway records, made once from one MeterProvider: the one source of
 * /metrics (Prometheus) and of OTLP / Azure Monitor metrics when those are on (docs/configuration.md).
 */
export interface GatewayMetrics {
  /** One response of either listener's app, fastify-served or raw (the one request observer). */
  request(route: string, method: string, status: number, seconds: number): void;
  /** `mcp.server.operation.duration`: one MCP operation as the gateway served it. */
  serverOperation: Histogram;
  /** `mcp.client.operation.duration`: the backend exchange of one MCP operation. */
  clientOperation: Histogram;
  tokenValidation(result: TokenValidation): void;
  /** One Store call; `failed` when it threw. */
  storeCall(operation: string, seconds: number, failed: boolean): void;
  /** Open long-lived streams (GET streams, subscriptions/listen), read at collection time. */
  observeActiveStreams(count: () => number): void;
  /** The audit trail's own counts, read at collection time. */
  observeAudit(audit: Audit): void;
  /** The process's memory and CPU time, read at collection time (the names prom-client's defaults used). */
  observeProcess(): void;
}

export function createGatewayMetrics(meterProvider: MeterProvider): GatewayMetrics {
  const meter = meterProvider.getMeter(SCOPE_NAME);
  const durations = meter.createHistogram('mcpgw_http_request_duration_seconds', {
    description: 'Time to response end',
    unit: 's',
    advice: { explicitBucketBoundaries: HTTP_DURATION_BUCKETS },
  });
  const storeDurations = meter.createHistogram('mcpgw_store_operation_duration_seconds', {
    description: 'Store calls by operation',
    unit: 's',
    advice: { explicitBucketBoundaries: STORE_DURATION_BUCKETS },
  });
  const storeErrors = meter.createCounter('mcpgw_store_errors', { description: 'Store calls that failed, by operation' });
  const mcpOptions = (description: string) => ({ description, unit: 's', advice: { explicitBucketBoundaries: MCP_DURATION_BUCKETS } });

  // Attribute sets per distinct value, made once: recording then allocates nothing.
  const storeAttributes = new Map<string, Attributes>();
  // The two counters of every request are counted here and read at collection time (observable
  // counters, exported as counters are): a counter's add() hashes its attributes on every call,
  // which every MCP call would pay (benchmark 1).
  const requestCounts = new Map<string, RouteCounts>();
  meter.createObservableCounter('mcpgw_http_requests', { description: 'HTTP requests by route and status' }).addCallback((result) => {
    for (const route of requestCounts.values()) {
      for (const byStatus of route.byMethod.values()) for (const count of byStatus.values()) result.observe(count.value, count.attributes);
    }
  });
  const validations: Record<TokenValidation, number> = { cached: 0, valid: 0, invalid: 0 };
  meter.createObservableCounter('mcpgw_token_validations', { description: 'Bearer token checks by result (cached, valid, invalid)' }).addCallback((result) => {
    for (const kind of TOKEN_VALIDATIONS) if (validations[kind] > 0) result.observe(validations[kind], { result: kind });
  });

  return {
    request(route, method, status, seconds) {
      let counts = requestCounts.get(route);
      if (counts === undefined) {
        counts = { attributes: { route }, byMethod: new Map() };
        requestCounts.set(route, counts);
      }
      let byStatus = counts.byMethod.get(method);
      if (byStatus === undefined) {
        byStatus = new Map();
        counts.byMethod.set(method, byStatus);
      }
      const count = byStatus.get(status);
      if (count === undefined) byStatus.set(status, { value: 1, attributes: { route, method, status } });
      else count.value++;
      durations.record(seconds, counts.attributes);
    },
    serverOperation: meter.createHistogram('mcp.server.operation.duration', mcpOptions('MCP operations as the gateway served them')),
    clientOperation: meter.createHistogram('mcp.client.operation.duration', mcpOptions('MCP operations as the backend answered them')),
    tokenValidation(result) {
      validations[result]++;
    },
    storeCall(operation, seconds, failed) {
      let attributes = storeAttributes.get(operation);
      if (attributes === undefined) {
        attributes = { operation };
        storeAttributes.set(operation, attributes);
      }
      storeDurations.record(seconds, attributes);
      if (failed) storeErrors.add(1, attributes);
    },
    observeActiveStreams(count) {
      meter
        .createObservableGauge('mcpgw_mcp_streams_active', { description: 'Open long-lived MCP streams (GET streams, subscriptions/listen)' })
        .addCallback((result) => result.observe(count()));
    },
    observeAudit(audit) {
      for (const [name, description, pick] of [
        ['mcpgw_audit_records_written', 'Audit records handed to the sink since start', 'written'],
        ['mcpgw_audit_records_dropped', 'Audit records dropped because the sink was slow or down, since start', 'dropped'],
        ['mcpgw_audit_records_queued', 'Audit records waiting for the sink', 'queued'],
      ] as const) {
        meter.createObservableGauge(name, { description }).addCallback((result) => result.observe(audit.stats()[pick]));
      }
    },
    observeProcess() {
      meter
        .createObservableGauge('process_resident_memory_bytes', { description: 'Resident memory size in bytes' })
        .addCallback((result) => result.observe(process.memoryUsage.rss()));
      meter
        .createObservableGauge('nodejs_heap_size_used_bytes', { description: 'V8 heap used in bytes' })
        .addCallback((result) => result.observe(process.memoryUsage().heapUsed));
      meter.createObservableCounter('process_cpu_seconds', { description: 'User and system CPU time spent in seconds' }).addCallback((result) => {
        const { user, system } = process.cpuUsage();
        result.observe((user + system) / 1e6);
      });
    },
  };
}
