import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { RawHandler } from '../http/app.ts';
import { StoreUnavailableError } from '../ports/store.ts';
import { GatewayError } from './forward.ts';
import { JSONRPC_SERVER_ERROR, jsonRpcError } from './jsonrpc.ts';

/** Retry-After on 503 answers while the store is unreachable (Redis reconnects within 2 s). */
const STORE_RETRY_AFTER_SECONDS = 2;

/** A JSON answer on a plain node:http response (what fastify's reply.send(object) writes). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void {
  const payload = JSON.stringify(body);
  headers['content-type'] = 'application/json; charset=utf-8';
  headers['content-length'] = Buffer.byteLength(payload);
  res.writeHead(status, headers);
  res.end(payload);
}

export function sendGatewayError(res: ServerResponse, error: GatewayError): void {
  const headers: OutgoingHttpHeaders = { 'cache-control': 'no-store' };
  // RFC 9110 §15.5.9: after a 408 the server closes the connection rather than keep waiting.
  if (error.status === 408) headers['connection'] = 'close';
  sendJson(res, error.status, jsonRpcError(error.code, error.message, error.id), headers);
}

/**
 * The error boundary of the MCP endpoints: what an MCP handler threw, answered as a JSON-RPC
 * error (or the connection dropped when an answer had already begun).
 */
export function answerFailure(res: ServerResponse, error: unknown, log: Logger): void {
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

/** A request header's single value. */
export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * The request body as fastify hands it to a catch-all content-type parser: none for a POST
 * without Content-Type, Transfer-Encoding and a non-zero Content-Length; otherwise the stream.
 */
export function requestStream(req: Readable & { headers: IncomingHttpHeaders }): Readable | undefined {
  const headers = req.headers;
  if (
    headers['content-type'] === undefined &&
    headers['transfer-encoding'] === undefined &&
    (headers['content-length'] === undefined || headers['content-length'] === '0')
  ) {
    return undefined;
  }
  return req;
}
