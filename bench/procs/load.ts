import autocannon from 'autocannon';
import { cpuMsOf, serveWorker } from '../lib/procs.ts';

interface LoadRequest {
  url: string;
  connections: number;
  durationSeconds: number;
  warmupSeconds: number;
  /** Instead of warmupSeconds: this many requests (benchmark 4 visits every token once). */
  warmupRequests?: number;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Rotated round-robin through Authorization (benchmark 4: many tokens, mostly cache misses). */
  tokens?: string[];
  /** Each request's JSON-RPC `id` made unique (`body` must have `"id":1`): an MCP session answers ids, not connections. */
  uniqueIds?: boolean;
  /** Requests per second over all connections (autocannon's overallRate); unset: as fast as answers come. */
  overallRate?: number;
  /** Processes whose CPU time over the measured period is reported per request (benchmark 1). */
  cpuPids?: Record<string, number[]>;
}

type OnResponse = (statusCode: number, responseTimeMs: number) => void;

/**
 * The load generator (autocannon's programmatic API) in its own process, so it does not share
 * an event loop with anything measured. Each `run` first loads for warmupSeconds (discarded).
 */
function load(options: LoadRequest, seconds: number, counter: { next: number }, onResponse?: OnResponse, amount?: number): Promise<autocannon.Result> {
  const tokens = options.tokens;
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        ...(amount ? { amount } : { duration: seconds }),
        ...(options.overallRate ? { overallRate: options.overallRate } : {}),
        method: (options.method ?? 'POST') as 'POST',
        headers: options.headers,
        body: options.body,
        ...(tokens && tokens.length > 0
          ? {
              requests: [
                {
                  setupRequest: (request) => {
                    const token = tokens[counter.next++ % tokens.length];
                    return { ...request, headers: { ...request.headers, authorization: `Bearer ${token}` } };
                  },
                },
              ],
            }
          : {}),
        ...(options.uniqueIds
          ? { requests: [{ setupRequest: (request) => ({ ...request, body: options.body!.replace('"id":1', `"id":${++counter.next}`) }) }] }
          : {}),
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
    if (onResponse) instance.on('response', (_client, statusCode, _bytes, responseTime) => onResponse(statusCode, responseTime));
  });
}

serveWorker({}, async (message) => {
  const options = message as unknown as LoadRequest;
  const counter = { next: 0 };
  if (options.warmupRequests) await load(options, 0, counter, undefined, options.warmupRequests);
  else if (options.warmupSeconds > 0) await load(options, options.warmupSeconds, counter);
  // autocannon's histogram keeps whole milliseconds; the per-response times are exact (hrtime).
  const samples: number[] = [];
  const cpuBefore = cpuOfEach(options.cpuPids);
  const result = await load(options, options.durationSeconds, counter, (statusCode, ms) => {
    if (statusCode >= 200 && statusCode < 300) samples.push(ms);
  });
  const cpuAfter = cpuOfEach(options.cpuPids);
  const cpuUsPerRequest: Record<string, number> = {};
  for (const name in cpuAfter) cpuUsPerRequest[name] = ((cpuAfter[name]! - cpuBefore[name]!) * 1000) / Math.max(1, result.requests.total);
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? Number.NaN;
  return {
    requests: result.requests.total,
    rps: result.requests.total / options.durationSeconds,
    p50: at(0.5),
    p99: at(0.99),
    mean: samples.reduce((sum, v) => sum + v, 0) / Math.max(1, samples.length),
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    cpuUsPerRequest,
  };
});

function cpuOfEach(pids: Record<string, number[]> = {}): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name in pids) out[name] = cpuMsOf(pids[name]!);
  return out;
}
