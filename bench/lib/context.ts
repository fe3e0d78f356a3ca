/** What every benchmark receives from bench/run.ts. */
export interface BenchContext {
  quick: boolean;
  /** A scratch directory removed after the run. */
  tmp: string;
  /** Extra Node flags for gateway workers (e.g. --cpu-prof). */
  gatewayNodeArgs: string[];
  log(message: string): void;
}

/** The MCP request of benchmarks 1 and 4: a tools/call in the 2025-11-25 revision (body streamed, not parsed). */
export const TOOLS_CALL_BODY = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'ping', arguments: {} } });
export const MCP_HEADERS = {
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
  'mcp-protocol-version': '2025-11-25',
};

/** What the load worker (procs/load.ts) answers to a `run`. */
export interface LoadResult {
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  /** CPU time per request over the measured period, per name given in the request's `cpuPids`. */
  cpuUsPerRequest: Record<string, number>;
}
