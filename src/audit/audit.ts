import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { trace } from '@opentelemetry/api';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import type { Logger } from 'pino';
import { type Clock, nowMsOf } from '../ports/clock.ts';
import type { ArgumentsMode } from './arguments.ts';
import { createChain } from './chain.ts';
import { type AuditSink, fileSink, streamSink } from './sinks.ts';

export interface AuditConfig {
  sink: 'off' | 'stdout' | 'file' | 'otlp' | 'azure-monitor';
  file: { path: string; maxBytes: number; maxFiles: number };
  /** The `azure-monitor` sink's connection string (else APPLICATIONINSIGHTS_CONNECTION_STRING). */
  azureMonitor?: { connectionString?: string | undefined };
  arguments: ArgumentsMode;
  /** Dotted paths redacted from tool arguments in `redacted` mode. */
  redact: string[];
  /** A checkpoint signs the chain head this often (when anything was written since the last). */
  checkpointSeconds: number;
  /** Records waiting for a slow sink beyond this are dropped (and counted). */
  queueMax: number;
}

/** One audit record before it is chained: `event.name` and OpenTelemetry-named fields. */
export interface AuditEvent {
  'event.name': string;
  [field: string]: unknown;
}

export interface Audit {
  /**
   * Queues a record; never throws, never waits (a slow or failed sink drops, counted). The event is
   * written later as it is then (given `time`, `service.instance.id`, the active trace): the caller
   * hands it over and does not change it afterwards.
   */
  record(event: AuditEvent): void;
  /** Resolves when what is queued now has been handed to the sink (tests). */
  flush(): Promise<void>;
  /** A last checkpoint, then the sink is closed (waits at most closeTimeoutMs for a slow sink). */
  close(): Promise<void>;
  stats(): { written: number; dropped: number; queued: number };
  /** False when the sink is `off`: callers skip building records (the MCP hot path). */
  readonly enabled: boolean;
  readonly arguments: ArgumentsMode;
  readonly redact: readonly string[];
}

/**
 * Lines handed to the sink per write; a queue this long is written at once. Kept small enough that
 * a batch's text (~1 KB a record) stays out of V8's large-object space: a 512-record batch cost
 * ~7 µs a record to join and encode, a 128-record one ~0.4 µs (measured on this project's VMs).
 */
const BATCH_MAX = 128;
/**
 * A record waits at most this long for others to join its batch: one sink write per window under
 * load rather than one per call (a file append costs ~30 µs of CPU, a whole tool call ~150 µs).
 */
const BATCH_WINDOW_MS = 50;
/** A log line about dropped records at most this often. */
const DROP_WARNING_INTERVAL_MS = 10_000;
const CLOSE_TIMEOUT_MS = 2000;
const CHECKPOINT = Symbol('checkpoint');

/**
 * The audit trail: records queued in memory, chained (chain.ts) and written in batches to one
 * sink. Writing is asynchronous: a call never waits on the sink; when the sink is slow or down the
 * queue is bounded and what does not fit is dropped, counted (stats, /metrics) and reported in the
 * trail itself (`audit.dropped`) once the sink takes writes again.
 */
export async function createAudit(
  config: AuditConfig,
  deps: {
    signingKeyPem: string;
    clock: Clock;
    logger: Logger;
    sink?: AuditSink;
    /** The OTEL_* variables of the `otlp` sink (endpoint, protocol, service name); APPLICATIONINSIGHTS_CONNECTION_STRING of `azure-monitor`. */
    env?: Record<string, string | undefined>;
  },
): Promise<Audit> {
  const stats = { written: 0, dropped: 0 };
  if (config.sink === 'off' && !deps.sink) {
    return {
      record() {},
      flush: async () => {},
      close: async () => {},
      stats: () => ({ ...stats, queued: 0 }),
      enabled: false,
      arguments: config.arguments,
      redact: config.redact,
    };
  }
  const opened =
    deps.sink !== undefined
      ? { sink: deps.sink, head: undefined }
      : config.sink === 'file'
        ? await fileSink(config.file)
        : config.sink === 'otlp'
          ? // Loaded only then: a gateway without it does not load the logs SDK.
            { sink: await (await import('./otlp-sink.ts')).otlpSink(deps.env ?? {}), head: undefined }
          : config.sink === 'azure-monitor'
            ? { sink: await azureMonitor(config, deps.env ?? {}), head: undefined }
            : { sink: streamSink(), head: undefined };
  const { sink } = opened;
  const key = createPrivateKey(deps.signingKeyPem);
  const kid = await calculateJwkThumbprint(await exportJWK(createPublicKey(key)));
  const instance = `${hostname()}/${process.pid}`;
  // A new chain starts from a random id, so two chains never share a start.
  const chain = createChain(opened.head ?? { seq: 0, hash: `chain:${randomBytes(16).toString('base64url')}` }, { key, kid }, instance);
  const now = isoTime(deps.clock);

  const queue: (AuditEvent | typeof CHECKPOINT)[] = [];
  let droppedReported = 0;
  let lastDropWarning = 0;
  let sinceCheckpoint = 0;
  let draining: Promise<void> | undefined;
  let window: NodeJS.Timeout | undefined;

  function drop(count: number): void {
    stats.dropped += count;
    const at = Date.now();
    if (at - lastDropWarning >= DROP_WARNING_INTERVAL_MS) {
      lastDropWarning = at;
      deps.logger.warn({ dropped: stats.dropped }, 'audit records dropped: the audit sink is slow or down');
    }
  }

  function enqueue(item: AuditEvent | typeof CHECKPOINT): void {
    queue.push(item);
    schedule();
  }

  /** The next batch goes out when the window closes, at once when the queue holds a full batch. */
  function schedule(): void {
    if (draining !== undefined) return;
    if (queue.length >= BATCH_MAX) writeNow();
    else window ??= setTimeout(writeNow, BATCH_WINDOW_MS);
  }

  function writeNow(): void {
    clearTimeout(window);
    window = undefined;
    if (draining !== undefined) return;
    draining = writeBatch().finally(() => {
      draining = undefined;
      if (queue.length > 0) schedule();
    });
  }

  /** Chains one batch (up to BATCH_MAX) and hands it to the sink. */
  async function writeBatch(): Promise<void> {
    const lines: string[] = [];
    if (stats.dropped > droppedReported) {
      lines.push(chain.append({ time: now(), 'event.name': 'audit.dropped', 'service.instance.id': instance, count: stats.dropped - droppedReported }));
      droppedReported = stats.dropped;
    }
    for (const item of queue.splice(0, BATCH_MAX)) {
      if (item === CHECKPOINT) {
        lines.push(await chain.checkpoint(now()));
        sinceCheckpoint = 0;
      } else {
        lines.push(chain.append(item));
        sinceCheckpoint++;
      }
    }
    try {
      await sink.write(lines);
      stats.written += lines.length;
    } catch (error) {
      // Chained but not written: `audit verify` shows the gap where they belong.
      deps.logger.error({ err: error, lost: lines.length }, 'audit sink failed; records lost');
      drop(lines.length);
      droppedReported = stats.dropped;
    }
  }

  const checkpoints = setInterval(() => {
    if (sinceCheckpoint > 0 || queue.some((item) => item !== CHECKPOINT)) enqueue(CHECKPOINT);
  }, config.checkpointSeconds * 1000);
  checkpoints.unref();

  /** Writes what is queued now, without waiting for the window. */
  async function flush(): Promise<void> {
    while (draining !== undefined || queue.length > 0) {
      if (draining === undefined) writeNow();
      await draining;
    }
  }

  return {
    record(event) {
      if (queue.length >= config.queueMax) return drop(1);
      // An event that leads with `time` (the MCP path's records, built with every field in place) is
      // completed in place; any other is copied behind `time` and `service.instance.id` first.
      const record: AuditEvent = 'time' in event ? event : { time: undefined, 'service.instance.id': undefined, ...event };
      record['time'] = now();
      record['service.instance.id'] = instance;
      // The trace this happened in (OpenTelemetry log data model: trace_id, span_id), when one is active.
      const span = record['trace.id'] === undefined ? trace.getActiveSpan() : undefined;
      if (span !== undefined) {
        const { traceId, spanId } = span.spanContext();
        record['trace.id'] = traceId;
        record['span.id'] = spanId;
      }
      enqueue(record);
    },
    flush,
    async close() {
      clearInterval(checkpoints);
      if (sinceCheckpoint > 0 || queue.length > 0) enqueue(CHECKPOINT);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
      });
      await Promise.race([flush(), timeout]);
      clearTimeout(timer);
      await Promise.race([sink.close(), new Promise((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS).unref())]);
    },
    stats: () => ({ ...stats, queued: queue.length }),
    enabled: true,
    arguments: config.arguments,
    redact: config.redact,
  };
}

/**
 * A record's `time`: ISO 8601 in UTC with milliseconds, as Date#toISOString writes it, which is
 * built once per second here (it costs ~2 µs a call, a date formatter and a time-zone lookup, on
 * every MCP call's record); within the second only the milliseconds change.
 */
export function isoTime(clock: Clock): () => string {
  let second = Number.NaN;
  let prefix = '';
  return () => {
    // Date keeps whole milliseconds, cut toward zero (ECMA-262 §21.4.1.31 TimeClip).
    const ms = Math.trunc(nowMsOf(clock));
    const at = Math.floor(ms / 1000);
    if (at !== second) {
      second = at;
      // "…T16:39:21." — toISOString always ends ".sssZ" (ECMA-262 §21.4.1.32), also for six-digit years.
      prefix = new Date(at * 1000).toISOString().slice(0, -4);
    }
    const millis = ms - at * 1000;
    return `${prefix}${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`;
  };
}

/** The `azure-monitor` sink, loaded only then (a gateway without it does not load the exporter). */
async function azureMonitor(config: AuditConfig, env: Record<string, string | undefined>): Promise<AuditSink> {
  const connectionString = config.azureMonitor?.connectionString ?? env['APPLICATIONINSIGHTS_CONNECTION_STRING']?.trim();
  if (!connectionString) throw new Error('audit.azureMonitor.connectionString: required by audit.sink azure-monitor (or set APPLICATIONINSIGHTS_CONNECTION_STRING)');
  return (await import('./azure-monitor-sink.ts')).azureMonitorSink(connectionString, env);
}
