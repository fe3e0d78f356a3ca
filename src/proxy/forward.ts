import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { BackendConfig } from '../config/schema.ts';
import { JSONRPC_SERVER_ERROR } from './jsonrpc.ts';

/**
 * Request headers a backend receives from the client (DESIGN §5, issue 3). Everything else is
 * dropped: hop-by-hop headers (RFC 9110 §7.6.1), the client's Authorization (no token
 * passthrough, MCP security best practices) and Cookie.
 */
const FORWARDED_REQUEST_HEADERS = [
  'accept',
  'content-type',
  'content-length',
  'mcp-session-id',
  'mcp-protocol-version',
  'last-event-id',
  'mcp-method',
  'mcp-name',
] as const;
/** 2026-07-28 §Server Behavior for Custom Headers: unrecognised Mcp-Param-* MUST be forwarded. */
const FORWARDED_REQUEST_PREFIX = 'mcp-param-';

/** Response headers a client receives from the backend: the MCP ones and what SSE needs. */
const FORWARDED_RESPONSE_HEADERS = [
  'content-type',
  'mcp-session-id',
  'mcp-protocol-version',
  'cache-control',
  'retry-after',
  'x-accel-buffering',
] as const;

export function forwardedRequestHeaders(incoming: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const value = incoming[name];
    if (typeof value === 'string') out[name] = value;
  }
  for (const [name, value] of Object.entries(incoming)) {
    if (name.startsWith(FORWARDED_REQUEST_PREFIX) && typeof value === 'string') out[name] = value;
  }
  return out;
}

/** Copies the forwarded response headers into `out` (a fresh object by default). */
export function forwardedResponseHeaders(incoming: IncomingHttpHeaders, out: OutgoingHttpHeaders = {}): OutgoingHttpHeaders {
  for (const name of FORWARDED_RESPONSE_HEADERS) {
    const value = incoming[name];
    if (typeof value === 'string') out[name] = value;
  }
  return out;
}

/** The gateway's own failure, answered as a JSON-RPC error with this HTTP status (STYLE §Errors). */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: number = JSONRPC_SERVER_ERROR,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'GatewayError';
  }
}

export interface BackendRequest {
  url: URL;
  method: 'GET' | 'POST' | 'DELETE';
  headers: Record<string, string>;
  body?: Readable | Buffer;
  signal: AbortSignal;
}

export interface Forwarder {
  request(request: BackendRequest): Promise<Dispatcher.ResponseData>;
  close(): Promise<void>;
}

/**
 * One keep-alive pool per backend origin (a backend's url and sseUrl may differ). Connect and
 * header timeouts come from the backend's config; bodies (SSE streams) have no idle timeout, the
 * keep-alive comments keep intermediaries from cutting them.
 */
export function createForwarder(backend: BackendConfig): Forwarder {
  const pools = new Map<string, Pool>();
  function poolFor(url: URL): Pool {
    let pool = pools.get(url.origin);
    if (!pool) {
      pool = new Pool(url.origin, {
        connect: { timeout: backend.connectTimeoutMs },
        headersTimeout: backend.headersTimeoutMs,
        bodyTimeout: 0,
      });
      pools.set(url.origin, pool);
    }
    return pool;
  }
  return {
    async request({ url, method, headers, body, signal }) {
      try {
        return await poolFor(url).request({ path: url.pathname + url.search, method, headers, body, signal });
      } catch (error) {
        throw toGatewayError(error, backend);
      }
    },
    async close() {
      await Promise.allSettled([...pools.values()].map((pool) => pool.destroy()));
    },
  };
}

/** undici failures before response headers: 504 when the backend is slow, 502 when it is unreachable. */
function toGatewayError(error: unknown, backend: BackendConfig): unknown {
  if (error instanceof GatewayError) return error;
  const code = (error as { code?: string }).code;
  if ((error as Error).name === 'AbortError' || code === 'UND_ERR_ABORTED') return error;
  if (code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new GatewayError(504, `Gateway Timeout: backend ${backend.name} did not answer within ${backend.headersTimeoutMs} ms`, undefined, {
      cause: error,
    });
  }
  return new GatewayError(502, `Bad Gateway: backend ${backend.name} is unreachable`, undefined, { cause: error });
}
