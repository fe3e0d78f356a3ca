import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { RawHandler } from '../http/app.ts';
import { StoreUnavailableError } from '../ports/store.ts';
import { sendJson } from './respond.ts';

/**
 * The MCP endpoints' own failures, one place: the JSON-RPC error bodies (STYLE §Errors: the
 * gateway's failures are JSON-RPC errors with an HTTP status, backend JSON-RPC passes untouched),
 * the GatewayError that carries them, and the error boundary every MCP handler runs behind.
 */

/** JSON-RPC 2.0 §5.1 reserves -32000…-32099 for implementation-defined server errors. */
export const JSONRPC_SERVER_ERROR = -32000;
/** The code the MCP SDKs use for an unknown (or not-yours) session. */
export const JSONRPC_SESSION_NOT_FOUND = -32001;
/** MCP 2026-07-28 transports/streamable-http §Server Validation: `HeaderMismatch`. */
export const JSONRPC_HEADER_MISMATCH = -32020;
export const JSONRPC_PARSE_ERROR = -32700;
export const JSONRPC_INVALID_REQUEST = -32600;

export type JsonRpcId = string | number | null;

export interface JsonRpcErrorBody {
  jsonrpc: '2.0';
  error: { code: number; message: string };
  id: JsonRpcId;
}

export function jsonRpcError(code: number, message: string, id: JsonRpcId = null): JsonRpcErrorBody {
  return { jsonrpc: '2.0', error: { code, message }, id };
}

/** Retry-After on 503 answers while the store is unreachable (Redis reconnects within 2 s). */
const STORE_RETRY_AFTER_SECONDS = 2;

/** The gateway's own failure, answered as a JSON-RPC error with this HTTP status (STYLE §Errors). */
export class GatewayError extends Error {
  readonly status: number;
  readonly code: number;
  /** The JSON-RPC id the error answers, when the request was read far enough to know it. */
  id: JsonRpcId = null;
  /** A whole JSON-RPC answer sent instead of the plain error (an error with `data`, an MRTR result). */
  answer?: object;
  constructor(status: number, message: string, code: number = JSONRPC_SERVER_ERROR, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GatewayError';
    this.status = status;
    this.code = code;
  }
}

/** The backend dropped a small answer part-way: the client's connection is dropped too (relay.ts). */
export class TruncatedResponseError extends Error {
  constructor(cause: unknown) {
    super('backend response ended early', { cause });
    this.name = 'TruncatedResponseError';
  }
}

export function tooLarge(maxBytes: number): GatewayError {
  return new GatewayError(413, `Payload Too Large: request body must not exceed ${maxBytes} bytes`);
}

/** RFC 9110 §15.5.9 (answered with Connection: close, respond.ts). */
export function tooSlow(timeoutMs: number): GatewayError {
  return new GatewayError(408, `Request Timeout: the request body did not arrive within ${timeoutMs} ms`);
}

export function sendGatewayError(res: ServerResponse, error: GatewayError): void {
  const headers: OutgoingHttpHeaders = { 'cache-control': 'no-store' };
  // RFC 9110 §15.5.9: after a 408 the server closes the connection rather than keep waiting.
  if (error.status === 408) headers['connection'] = 'close';
  sendJson(res, error.status, error.answer ?? jsonRpcError(error.code, error.message, error.id), headers);
}

/**
 * The error boundary of the MCP endpoints: what an MCP handler threw, answered as a JSON-RPC
 * error (or the connection dropped when an answer had already begun).
 */
function answerFailure(res: ServerResponse, error: unknown, log: Logger): void {
  if (error instanceof StoreUnavailableError) {
    // Issue 5: a store outage is the gateway's own failure, answered quickly as a JSON-RPC
    // error with 503 (RFC 9110 §15.6.4) and Retry-After; clients retry, nothing is lost.
    log.warn({ err: error }, 'MCP request refused: store unavailable');
    if (res.headersSent) return void res.destroy();
    sendJson(res, 503, jsonRpcError(JSONRPC_SERVER_ERROR, 'Service Unavailable: the gateway cannot reach its store; try again later'), {
      'retry-after': String(STORE_RETRY_AFTER_SECONDS),
      'cache-control': 'no-store',
    });
    return;
  }
  if (error instanceof GatewayError) {
    // The gateway's own refusals (413, 400 header mismatch, 502 …) thrown anywhere in a handler.
    if (error.status >= 500) log.warn({ err: error }, 'MCP request failed');
    if (res.headersSent) return void res.destroy();
    sendGatewayError(res, error);
    return;
  }
  const statusCode = (error as { statusCode?: number } | undefined)?.statusCode;
  const status = statusCode && statusCode >= 400 && statusCode < 500 ? statusCode : 500;
  if (status === 500) log.error({ err: error }, 'MCP request failed');
  if (res.headersSent) return void res.destroy();
  sendJson(res, status, jsonRpcError(JSONRPC_SERVER_ERROR, status === 500 ? 'Internal error' : (error as Error).message));
}

/** A raw route handler behind the MCP endpoints' error boundary (answerFailure). */
export function guarded(log: Logger, handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>): RawHandler {
  return (req, res) => {
    handler(req, res).catch((error: unknown) => answerFailure(res, error, log));
  };
}

