import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { createSecureContext } from 'node:tls';
import { type Dispatcher, Pool, util } from 'undici';
import type { BackendConfig } from '../config/schema.ts';
import { tlsTrustOptions } from '../config/tls.ts';
import { GatewayError, TruncatedResponseError } from './errors.ts';

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
const FORWARDED_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  'accept',
  'content-type',
  'content-length',
  'mcp-session-id',
  'mcp-protocol-version',
  'last-event-id',
  'mcp-method',
  'mcp-name',
]);
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

/** One pass over the client's headers (this runs on every call). */
export function forwardedRequestHeaders(incoming: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in incoming) {
    if (!FORWARDED_REQUEST_HEADERS.has(name) && !name.startsWith(FORWARDED_REQUEST_PREFIX)) continue;
    const value = incoming[name];
    if (typeof value === 'string') out[name] = value;
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
  if (response instanceof Exchange) response.release();
  else if (!Buffer.isBuffer(response.body)) response.body.destroy();
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

/**
 * Where a streamed answer goes when it is relayed as it is (no policy filter or audit reading
 * it): straight from the backend socket's handler, without a Readable per answer (benchmark 1).
 */
export interface BodySink {
  /**
   * The first call: what arrived before the sink was attached (often the whole answer) and
   * whether the body already ended (`true`) or failed (the error). `resume` restarts a body
   * paused by a `write` (or this call) that returned false.
   */
  start(chunks: Buffer[], ended: boolean | Error, resume: () => void): boolean;
  /** A chunk as it arrives; false asks for a pause until `resume` is called. */
  write(chunk: Buffer): boolean;
  end(): void;
  /** The body failed mid-way (backend gone, or aborted). */
  fail(error: Error): void;
}

/** The answer's body when it was collected whole (without turning a streamed one into a Readable). */
export function wholeBody(response: BackendResponse): Buffer | undefined {
  if (response instanceof Exchange) return response.wholeBody;
  return Buffer.isBuffer(response.body) ? response.body : undefined;
}

/**
 * Feeds a streamed answer to `sink` directly; false when that is not possible (a whole body, or
 * a response whose body was already taken as a stream or wrapped): relay its `body` then.
 */
export function relayDirectly(response: BackendResponse, sink: BodySink): boolean {
  return response instanceof Exchange && response.attach(sink);
}

export interface Forwarder {
  request(request: BackendRequest): BackendExchange;
  close(): Promise<void>;
}

/** An idle backend connection is closed this long before the backend's Keep-Alive timeout hint ends. */
const KEEP_ALIVE_MARGIN_MS = 1000;
/** Idle connections of a backend that sends no Keep-Alive hint close after this (node:http servers close at 5 s). */
const DEFAULT_IDLE_MS = 4000;

/**
 * One undici keep-alive pool per backend origin (a backend's url and sseUrl may differ): one
 * request per connection at a time, no retries (a retried POST could run a tool twice), idle
 * connections kept as long as the backend's `Keep-Alive: timeout` hint allows, TCP keep-alive on
 * (a backend host that vanishes under a quiet SSE stream is noticed). Connect and header timeouts
 * come from the backend's config; bodies (SSE streams) have no idle timeout, the keep-alive
 * comments keep intermediaries from cutting them. `Pool#dispatch` with a handler: the cheapest
 * undici API per call (bench/RESULTS.md).
 */
export function createForwarder(backend: BackendConfig): Forwarder {
  const pools = new Map<string, Pool>();
  // backends[].tls: one secure context for all the backend's connections (built per connection,
  // the system CAs plus a private one would be parsed on every TLS handshake).
  const { ca, servername } = backend.tls ? tlsTrustOptions(backend.tls) : {};
  const tls = { ...(ca ? { secureContext: createSecureContext({ ca }) } : {}), ...(servername ? { servername } : {}) };
  // The path and pool of a URL, worked out once per URL object (a backend's URL is one object
  // for all its calls; URL getters re-slice the href on every access).
  const targets = new WeakMap<URL, { pool: Pool; path: string }>();
  function targetOf(url: URL): { pool: Pool; path: string } {
    let target = targets.get(url);
    if (target === undefined) {
      let pool = pools.get(url.origin);
      if (pool === undefined) {
        pool = new Pool(url.origin, {
          connect: { timeout: backend.connectTimeoutMs, keepAlive: true, noDelay: true, ...tls },
          headersTimeout: backend.headersTimeoutMs,
          bodyTimeout: 0,
          keepAliveTimeout: DEFAULT_IDLE_MS,
          keepAliveTimeoutThreshold: KEEP_ALIVE_MARGIN_MS,
        });
        pools.set(url.origin, pool);
      }
      target = { pool, path: url.pathname + url.search };
      targets.set(url, target);
    }
    return target;
  }
  const toError = (error: unknown) => toGatewayError(error, backend);
  return {
    request({ url, method, headers, body }) {
      const { pool, path } = targetOf(url);
      const exchange = new Exchange(toError);
      pool.dispatch({ path, method, headers, body }, exchange);
      return exchange;
    },
    async close() {
      await Promise.allSettled([...pools.values()].map((pool) => pool.destroy()));
    },
  };
}

/** Chunks of a streamed answer held before its reader attaches; past this the backend socket pauses. */
const PENDING_BYTES = 64 * 1024;

/**
 * One call's undici handler (the legacy callback shape, which undici calls directly; the newer
 * controller shape is wrapped per call), and the answer it resolves to: small answers of known
 * length are collected whole; others are held until a reader takes them, either a BodySink fed
 * from this handler (relayDirectly) or a back-pressured Readable made on first access to `body`.
 */
class Exchange implements Dispatcher.DispatchHandler, BackendExchange, BackendResponse {
  readonly response: Promise<BackendResponse>;
  statusCode = 0;
  headers: IncomingHttpHeaders = EMPTY_HEADERS;
  private resolve!: (response: BackendResponse) => void;
  private reject!: (error: unknown) => void;
  private readonly toError: (error: unknown) => unknown;
  private abortRequest: ((error: Error) => void) | undefined;
  private resumeBody: (() => void) | undefined;
  private cancelled = false;
  private settled = false;
  /** The body ended (true) or failed (the error). */
  private ended: boolean | Error = false;
  /** An answer collected whole, once complete. */
  private whole: Buffer | undefined;
  /** Chunks of an answer collected whole, or of a streamed one before its reader attached. */
  private chunks: Buffer[] | undefined;
  private length = 0;
  private collect = false;
  private paused = false;
  private stream: Readable | undefined;
  private sink: BodySink | undefined;

  constructor(toError: (error: unknown) => unknown) {
    this.toError = toError;
    this.response = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  get wholeBody(): Buffer | undefined {
    return this.whole;
  }

  get body(): Buffer | Readable {
    if (this.whole !== undefined) return this.whole;
    if (this.stream === undefined) this.stream = this.toReadable();
    return this.stream;
  }

  abort(): void {
    if (this.cancelled || this.ended !== false) return;
    this.cancelled = true;
    if (this.abortRequest) this.abortRequest(abortError());
  }

  /** Drops an answer that will not be delivered. */
  release(): void {
    if (this.stream !== undefined) this.stream.destroy();
    else this.abort();
    this.chunks = undefined;
  }

  attach(sink: BodySink): boolean {
    if (this.whole !== undefined || this.stream !== undefined || this.sink !== undefined) return false;
    this.sink = sink;
    const chunks = this.chunks ?? [];
    this.chunks = undefined;
    if (sink.start(chunks, this.ended, this.resumeBody!) && this.paused) {
      this.paused = false;
      this.resumeBody!();
    }
    return true;
  }

  onConnect(abort: (error?: Error) => void): void {
    this.abortRequest = abort;
    if (this.cancelled) abort(abortError());
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    // RFC 9110 §15.2: 1xx answers are interim, the final one follows.
    if (statusCode < 200) return true;
    const headers = util.parseHeaders(rawHeaders) as IncomingHttpHeaders;
    const length = Number(headers['content-length']);
    this.statusCode = statusCode;
    this.headers = headers;
    this.chunks = [];
    if (length <= WHOLE_BODY_BYTES && !isEventStream(headers['content-type'])) {
      this.collect = true;
      return true;
    }
    this.resumeBody = resume;
    this.settled = true;
    this.resolve(this);
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.sink !== undefined) return this.sink.write(chunk);
    if (this.stream !== undefined) return this.stream.push(chunk);
    const chunks = this.chunks;
    if (chunks === undefined) return true; // released
    chunks.push(chunk);
    this.length += chunk.length;
    if (this.collect || this.length < PENDING_BYTES) return true;
    this.paused = true;
    return false;
  }

  onComplete(): void {
    this.ended = true;
    if (this.collect) {
      const chunks = this.chunks!;
      this.settled = true;
      this.whole = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.length);
      this.chunks = undefined;
      this.resolve(this);
    } else if (this.sink !== undefined) {
      this.sink.end();
    } else {
      this.stream?.push(null);
    }
  }

  onError(error: Error): void {
    this.ended = error;
    if (!this.settled) {
      this.settled = true;
      this.reject(this.collect ? new TruncatedResponseError(error) : this.toError(error));
    } else if (this.sink !== undefined) {
      this.sink.fail(error);
    } else {
      this.stream?.destroy(error);
    }
  }

  /** The body as a Readable: what arrived so far, then the rest as it comes. */
  private toReadable(): Readable {
    const stream = new Readable({
      read: () => {
        if (this.paused) this.paused = false;
        this.resumeBody?.();
      },
      destroy: (error, callback) => {
        if (this.ended === false) this.abortRequest?.(error ?? abortError());
        callback(error);
      },
    });
    // The body may fail before its reader listens (or between two readers): the reader still
    // learns it from the stream's state, but it is never an uncaught error.
    stream.on('error', ignore);
    for (const chunk of this.chunks ?? []) stream.push(chunk);
    this.chunks = undefined;
    if (this.ended === true) stream.push(null);
    else if (this.ended !== false) stream.destroy(this.ended);
    return stream;
  }
}

const EMPTY_HEADERS: IncomingHttpHeaders = Object.freeze({}) as IncomingHttpHeaders;

function ignore(): void {}

function abortError(): Error {
  const error = new Error('The backend request was aborted');
  error.name = 'AbortError';
  return error;
}

/**
 * Failures before the answer: 504 when the backend is slow, 502 when it is unreachable or its
 * answer breaks HTTP/1.1 (said as such: the backend is up, but broken).
 */
/** Node's codes for a server certificate it refused: OpenSSL's X509_V_ERR_* names, or a name mismatch. */
const CERTIFICATE_REFUSED = /^(?!ERR_SSL_)(ERR_TLS_CERT_ALTNAME_INVALID|[A-Z_]*CERT[A-Z_]*|UNABLE_TO_[A-Z_]+|INVALID_CA|INVALID_PURPOSE|PATH_LENGTH_EXCEEDED|HOSTNAME_MISMATCH)$/;

function toGatewayError(error: unknown, backend: BackendConfig): unknown {
  // The request body's own failure (413 or 408 from limitBytes) and aborts pass as they are.
  if (error instanceof GatewayError || (error as Error).name === 'AbortError') return error;
  const code = (error as { code?: unknown }).code;
  if (code === 'UND_ERR_ABORTED') return error;
  if (code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new GatewayError(504, `Gateway Timeout: backend ${backend.name} did not answer within ${backend.headersTimeoutMs} ms`, undefined, {
      cause: error,
    });
  }
  if (typeof code === 'string' && (code.startsWith('HPE_') || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' || code === 'UND_ERR_INFO')) {
    return new GatewayError(502, `Bad Gateway: backend ${backend.name} sent an invalid HTTP response`, undefined, { cause: error });
  }
  if (typeof code === 'string' && CERTIFICATE_REFUSED.test(code)) {
    // The name of the check that failed (DEPTH_ZERO_SELF_SIGNED_CERT, ERR_TLS_CERT_ALTNAME_INVALID…)
    // tells an operator what to fix (backends[].tls); it says nothing about the backend's content.
    return new GatewayError(502, `Bad Gateway: backend ${backend.name}'s TLS certificate is not trusted (${code})`, undefined, { cause: error });
  }
  return new GatewayError(502, `Bad Gateway: backend ${backend.name} is unreachable`, undefined, { cause: error });
}
