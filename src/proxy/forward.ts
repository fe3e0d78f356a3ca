import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { type Dispatcher, Pool } from 'undici';
import type { BackendConfig } from '../config/schema.ts';
import { JSONRPC_SERVER_ERROR } from './jsonrpc.ts';

/**
 * Bodies of at most this many bytes with a known length (requests) or a Content-Length and not
 * SSE (responses) are passed on whole, in one write; larger or open-ended ones stream.
 */
export const WHOLE_BODY_BYTES = 64 * 1024;

export function isEventStream(contentType: string | string[] | undefined): boolean {
  return typeof contentType === 'string' && /^text\/event-stream\b/i.test(contentType);
}

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
  for (const name in incoming) {
    const value = incoming[name];
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
}

/**
 * One request to a backend in flight. `abort()` cancels it at any point (before the answer, or
 * while its body streams); the response then rejects with an AbortError or its body is destroyed.
 * A plain callback rather than an AbortSignal: an EventTarget per tool call costs (benchmark 1).
 */
export interface BackendExchange {
  response: Promise<BackendResponse>;
  abort(): void;
}

/** Releases a backend answer that will not be delivered (its stream would hold the connection). */
export function destroyBody(response: BackendResponse): void {
  if (!Buffer.isBuffer(response.body)) response.body.destroy();
}

export interface BackendResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  /**
   * A small answer of known length (not SSE) whole, as one Buffer; anything else as a stream
   * (back-pressured: reading resumes the backend socket; destroying it aborts the request).
   */
  body: Buffer | Readable;
}

export interface Forwarder {
  request(request: BackendRequest): BackendExchange;
  close(): Promise<void>;
}

/** The backend dropped a small answer part-way: the client's connection is dropped too (relay.ts). */
export class TruncatedResponseError extends Error {
  constructor(cause: unknown) {
    super('backend response ended early', { cause });
    this.name = 'TruncatedResponseError';
  }
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
    request({ url, method, headers, body }) {
      let handler: ReturnType<typeof exchangeHandler> | undefined;
      const response = new Promise<BackendResponse>((resolve, reject) => {
        handler = exchangeHandler(resolve, (error: unknown) => reject(toGatewayError(error, backend)));
        poolFor(url).dispatch({ path: url.pathname + url.search, method, headers, body }, handler);
      });
      return { response, abort: () => handler!.cancel() };
    },
    async close() {
      await Promise.allSettled([...pools.values()].map((pool) => pool.destroy()));
    },
  };
}

/**
 * undici's dispatch handler (no BodyReadable/promise wrapper per call, unlike `request()`): small
 * answers are collected whole, others become a back-pressured stream.
 */
function exchangeHandler(
  resolve: (response: BackendResponse) => void,
  reject: (error: unknown) => void,
): Dispatcher.DispatchHandler & { cancel(): void } {
  let abort: ((error: Error) => void) | undefined;
  let cancelled = false;
  let settled = false;
  let stream: Readable | undefined;
  let whole: { status: number; headers: IncomingHttpHeaders; chunks: Buffer[]; length: number } | undefined;
  let done = false;
  const finish = () => {
    done = true;
  };
  return {
    cancel() {
      if (cancelled || done) return;
      cancelled = true;
      abort?.(abortError());
    },
    onConnect(abortRequest) {
      abort = abortRequest;
      if (cancelled) abortRequest(abortError());
    },
    onHeaders(statusCode, rawHeaders, resume) {
      if (statusCode < 200) return true;
      const headers = parseRawHeaders(rawHeaders as unknown as Buffer[]);
      const length = Number(headers['content-length']);
      if (!isEventStream(headers['content-type']) && length <= WHOLE_BODY_BYTES) {
        whole = { status: statusCode, headers, chunks: [], length: 0 };
        return true;
      }
      stream = new Readable({
        read: () => resume(),
        destroy: (error, callback) => {
          if (!done) abort?.(error ?? abortError());
          callback(error);
        },
      });
      settled = true;
      resolve({ statusCode, headers, body: stream });
      return true;
    },
    onData(chunk) {
      if (whole) {
        whole.chunks.push(chunk);
        whole.length += chunk.length;
        return true;
      }
      return stream!.push(chunk);
    },
    onComplete() {
      finish();
      if (whole) {
        settled = true;
        const body = whole.chunks.length === 1 ? whole.chunks[0]! : Buffer.concat(whole.chunks, whole.length);
        resolve({ statusCode: whole.status, headers: whole.headers, body });
      } else {
        stream?.push(null);
      }
    },
    onError(error) {
      finish();
      if (stream) stream.destroy(error);
      else if (!settled) reject(whole ? new TruncatedResponseError(error) : error);
    },
  };
}

function abortError(): Error {
  const error = new Error('The backend request was aborted');
  error.name = 'AbortError';
  return error;
}

/** undici's raw header list (name, value, …) as node:http-style headers (lower-case names). */
function parseRawHeaders(raw: Buffer[]): IncomingHttpHeaders {
  const headers: Record<string, string | string[]> = Object.create(null);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    const rawValue = raw[i + 1]!;
    const value = typeof rawValue === 'string' ? rawValue : rawValue.toString('latin1');
    const previous = headers[name];
    if (previous === undefined) headers[name] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else headers[name] = [previous, value];
  }
  return headers;
}

/** undici failures before response headers: 504 when the backend is slow, 502 when it is unreachable. */
function toGatewayError(error: unknown, backend: BackendConfig): unknown {
  if (error instanceof GatewayError || error instanceof TruncatedResponseError) return error;
  const code = (error as { code?: string }).code;
  if ((error as Error).name === 'AbortError' || code === 'UND_ERR_ABORTED') return error;
  if (code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new GatewayError(504, `Gateway Timeout: backend ${backend.name} did not answer within ${backend.headersTimeoutMs} ms`, undefined, {
      cause: error,
    });
  }
  return new GatewayError(502, `Bad Gateway: backend ${backend.name} is unreachable`, undefined, { cause: error });
}
