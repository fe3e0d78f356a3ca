import { once } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { BackendClientError, Connection, Exchange, type Pool, type Shared } from './backend-connection.ts';
import { requestHead } from './http1.ts';

/**
 * A minimal HTTP/1.1 client (RFC 9112) for the gateway's backends: one keep-alive pool per
 * origin, one request per connection at a time, no retries (a retried POST could run a tool
 * twice). Small answers of known length are collected whole; others stream, back-pressured.
 * The connection and its wire handling live in backend-connection.ts.
 */

export interface ClientRequest {
  url: URL;
  method: string;
  /** Lower-case names. content-length is used only to frame a stream body. */
  headers: Record<string, string>;
  body?: Readable | Buffer;
}

export interface ClientResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: Buffer | Readable;
}

export interface ClientExchange {
  response: Promise<ClientResponse>;
  abort(): void;
}

export interface BackendClient {
  request(request: ClientRequest): ClientExchange;
  /** Destroys every socket, idle or busy (resolved once all are closed); later requests fail ('closed'). */
  close(): Promise<void>;
}

export interface BackendClientOptions {
  connectTimeoutMs: number;
  /** From the request's last byte to the final response head. Bodies have no timeout (SSE). */
  headersTimeoutMs: number;
  /** Whether an answer with this Content-Length is collected into one Buffer rather than streamed. */
  collectWhole(headers: IncomingHttpHeaders, contentLength: number): boolean;
  /** Maps what the response promise rejects with (the request body's own errors included). */
  toError?: (error: unknown) => unknown;
  /** A CA certificate (PEM) trusted for https in addition to Node's default roots. */
  ca?: string;
}

export function createBackendClient(options: BackendClientOptions): BackendClient {
  for (const key of ['connectTimeoutMs', 'headersTimeoutMs'] as const) {
    if (!Number.isInteger(options[key]) || options[key] <= 0) throw new TypeError(`${key} must be a positive integer`);
  }
  const shared: Shared = { options, toError: options.toError ?? ((error) => error), all: new Set(), closed: false };
  const pools = new Map<string, Pool>();
  // What a URL means to the client, worked out once per URL object (its getters re-slice the
  // href on every access; a backend's URL is one object for all its calls).
  const destinations = new WeakMap<URL, Destination>();
  function destinationOf(url: URL): Destination {
    let destination = destinations.get(url);
    if (destination === undefined) {
      const scheme = url.protocol;
      const supported = scheme === 'http:' || scheme === 'https:';
      let pool = supported ? pools.get(url.origin) : undefined;
      if (supported && pool === undefined) {
        const tls = scheme === 'https:';
        const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
        pool = { shared, tls, host, port: Number(url.port) || (tls ? 443 : 80), idle: [] };
        pools.set(url.origin, pool);
      }
      destination = { pool, scheme, target: `${url.pathname}${url.search}`, host: url.host };
      destinations.set(url, destination);
    }
    return destination;
  }
  return {
    request(request) {
      const destination = destinationOf(request.url);
      const head = requestHead({ ...request, target: destination.target, host: destination.host });
      const exchange = new Exchange(request, head ?? '', shared.toError);
      const body = request.body;
      if (body !== undefined && !Buffer.isBuffer(body)) {
        // Listening now: the body (limitBytes) may fail with a 413 before a socket is ready.
        body.on('error', (error) => exchange.fail(error));
        if (body.destroyed) exchange.fail(body.errored ?? new BackendClientError('request', 'the request body was destroyed'));
      }
      const pool = destination.pool;
      if (head === undefined) exchange.fail(new BackendClientError('request', 'refusing to send an invalid request header or method'));
      else if (shared.closed) exchange.fail(new BackendClientError('closed', 'the backend client is closed'));
      else if (pool === undefined) exchange.fail(new BackendClientError('request', `unsupported URL scheme ${destination.scheme}`));
      if (pool === undefined || exchange.over) return exchange;
      const connection = takeIdle(pool);
      if (connection) connection.start(exchange);
      else new Connection(pool, exchange);
      return exchange;
    },
    async close() {
      shared.closed = true;
      const closing = [...shared.all].map((connection) => once(connection.socket, 'close'));
      for (const connection of shared.all) {
        if (connection.exchange) connection.exchange.fail(new BackendClientError('closed', 'the backend client was closed'));
        else connection.socket.destroy();
      }
      await Promise.all(closing);
    },
  };
}

interface Destination {
  /** Undefined for a scheme other than http: and https:. */
  pool: Pool | undefined;
  scheme: string;
  target: string;
  host: string;
}

function takeIdle(pool: Pool): Connection | undefined {
  const now = Date.now();
  for (let connection = pool.idle.pop(); connection !== undefined; connection = pool.idle.pop()) {
    connection.idle = false;
    // The idle timer may run late on a busy loop: never hand out a socket past its expiry.
    if (!connection.socket.destroyed && now - connection.idleSince < connection.idleMs) return connection;
    connection.socket.destroy();
  }
  return undefined;
}
