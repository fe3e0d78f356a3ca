import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { BackendConfig } from '../config/schema.ts';
import { createBackendClient } from './backend-client.ts';
import { BackendClientError } from './backend-connection.ts';
import { JSONRPC_SERVER_ERROR, type JsonRpcId } from './jsonrpc.ts';

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
  readonly status: number;
  readonly code: number;
  /** The JSON-RPC id the error answers, when the request was read far enough to know it. */
  id: JsonRpcId = null;
  constructor(status: number, message: string, code: number = JSONRPC_SERVER_ERROR, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GatewayError';
    this.status = status;
    this.code = code;
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
 * One keep-alive pool per backend origin (a backend's url and sseUrl may differ), over our own
 * HTTP/1.1 client (backend-client.ts; undici's per-request cost showed in benchmark 1). Connect
 * and header timeouts come from the backend's config; bodies (SSE streams) have no idle timeout,
 * the keep-alive comments keep intermediaries from cutting them.
 */
export function createForwarder(backend: BackendConfig): Forwarder {
  const client = createBackendClient({
    connectTimeoutMs: backend.connectTimeoutMs,
    headersTimeoutMs: backend.headersTimeoutMs,
    collectWhole: (headers, length) => length <= WHOLE_BODY_BYTES && !isEventStream(headers['content-type']),
    toError: (error) => toGatewayError(error, backend),
  });
  return { request: client.request, close: client.close };
}

/** Failures before the answer: 504 when the backend is slow, 502 when it is unreachable or breaks HTTP. */
function toGatewayError(error: unknown, backend: BackendConfig): unknown {
  // The request body's own failure (a 413 from limitBytes) and aborts pass as they are.
  if (error instanceof GatewayError || (error as Error).name === 'AbortError') return error;
  if (error instanceof BackendClientError && error.reason === 'truncated') return new TruncatedResponseError(error);
  if (error instanceof BackendClientError && error.reason === 'headers-timeout') {
    return new GatewayError(504, `Gateway Timeout: backend ${backend.name} did not answer within ${backend.headersTimeoutMs} ms`, undefined, {
      cause: error,
    });
  }
  return new GatewayError(502, `Bad Gateway: backend ${backend.name} is unreachable`, undefined, { cause: error });
}
