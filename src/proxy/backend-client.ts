import { once } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { connect as connectTls } from 'node:tls';

/**
 * A minimal HTTP/1.1 client (RFC 9112) for the gateway's backends: one keep-alive pool per
 * origin, one request per connection at a time, no retries (a retried POST could run a tool
 * twice). Small answers of known length are collected whole; others stream, back-pressured.
 */

/** Status line and fields of a response; RFC 9112 §2.3 leaves the limit to the recipient. */
const MAX_HEAD_BYTES = 64 * 1024;
/** Idle sockets expire after this without a Keep-Alive hint (node:http servers close at 5 s). */
const DEFAULT_IDLE_MS = 4000;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);
/** A reader's offset meaning: stop reading this chunk (the exchange ended). */
const STOP = Number.MAX_SAFE_INTEGER;
const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;

// Parser phases: the head, then a body framed by length, by chunks or by the connection's end.
const HEAD = 0;
const LENGTH = 1;
const CHUNKED = 2;
const UNTIL_CLOSE = 3;
// Chunked body states (RFC 9112 §7.1).
const SIZE = 0;
const SIZE_MORE = 1;
const EXT = 2;
const SIZE_LF = 3;
const DATA = 4;
const DATA_CR = 5;
const DATA_LF = 6;
const TRAILER_START = 7;
const TRAILER = 8;
const TRAILER_LF = 9;
const END_LF = 10;

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
  /** Extra trusted CA certificates (PEM) for https; Node's default trust otherwise. */
  ca?: string;
}

/**
 * Why an exchange failed. 'connect': no connection; 'request': a header refused before sending;
 * 'closed': the connection ended before the answer; 'protocol': the answer breaks RFC 9112;
 * 'truncated': a body ended early.
 */
export class BackendClientError extends Error {
  constructor(
    readonly reason: 'connect' | 'request' | 'headers-timeout' | 'closed' | 'protocol' | 'truncated',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BackendClientError';
  }
}

interface Shared {
  options: BackendClientOptions;
  toError: (error: unknown) => unknown;
  all: Set<Connection>;
  closed: boolean;
}

interface Pool {
  shared: Shared;
  tls: boolean;
  host: string;
  port: number;
  /** Idle connections, the most recently used last (LIFO). */
  idle: Connection[];
}

export function createBackendClient(options: BackendClientOptions): BackendClient {
  for (const key of ['connectTimeoutMs', 'headersTimeoutMs'] as const) {
    if (!Number.isInteger(options[key]) || options[key] <= 0) throw new TypeError(`${key} must be a positive integer`);
  }
  const shared: Shared = { options, toError: options.toError ?? ((error) => error), all: new Set(), closed: false };
  const pools = new Map<string, Pool>();
  return {
    request(request) {
      const head = requestHead(request);
      const exchange = new Exchange(request, head ?? '', shared.toError);
      const body = request.body;
      if (body !== undefined && !Buffer.isBuffer(body)) {
        // Listening now: the body (limitBytes) may fail with a 413 before a socket is ready.
        body.on('error', (error) => exchange.fail(error));
        if (body.destroyed) exchange.fail(body.errored ?? new BackendClientError('request', 'the request body was destroyed'));
      }
      const { url } = request;
      if (head === undefined) exchange.fail(new BackendClientError('request', 'refusing to send an invalid request header or method'));
      else if (shared.closed) exchange.fail(new BackendClientError('closed', 'the backend client is closed'));
      else if (url.protocol !== 'http:' && url.protocol !== 'https:') exchange.fail(new BackendClientError('request', `unsupported URL scheme ${url.protocol}`));
      if (exchange.over) return exchange;
      let pool = pools.get(url.origin);
      if (pool === undefined) {
        const tls = url.protocol === 'https:';
        const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
        pool = { shared, tls, host, port: Number(url.port) || (tls ? 443 : 80), idle: [] };
        pools.set(url.origin, pool);
      }
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

function ignore(): void {}

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

/** One request and its answer. `over` once it completed or failed; nothing happens after. */
class Exchange implements ClientExchange {
  readonly response: Promise<ClientResponse>;
  private resolve!: (response: ClientResponse) => void;
  private reject!: (error: unknown) => void;
  connection: Connection | undefined;
  stream: ResponseBody | undefined;
  /** The request's last byte was written. */
  sent = false;
  settled = false;
  over = false;

  constructor(
    readonly request: ClientRequest,
    readonly head: string,
    private readonly toError: (error: unknown) => unknown,
  ) {
    this.response = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  answer(response: ClientResponse): void {
    this.settled = true;
    this.resolve(response);
  }

  abort(): void {
    const error = new Error('The backend request was aborted');
    error.name = 'AbortError';
    this.fail(error);
  }

  /** Before the answer: rejects. After: destroys the streamed body. The socket is never reused. */
  fail(error: unknown): void {
    if (this.over) return;
    this.over = true;
    const connection = this.connection;
    if (connection?.exchange === this) connection.drop();
    const body = this.request.body;
    if (!this.sent && body !== undefined && !Buffer.isBuffer(body)) body.destroy();
    if (!this.settled) {
      this.settled = true;
      this.reject(this.toError(error));
    } else {
      this.stream?.destroy(error as Error);
    }
  }
}

/** A streamed answer: reading resumes the socket, destroying it aborts the exchange. */
class ResponseBody extends Readable {
  constructor(private readonly exchange: Exchange) {
    super();
    // The body may fail before its reader starts (the answer is parsed ahead): the reader still
    // sees the error (an errored stream rejects its iterator), but it is never an uncaught one.
    this.on('error', ignore);
  }
  override _read(): void {
    const socket = this.exchange.connection?.socket;
    if (!this.exchange.over && socket?.isPaused()) socket.resume();
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.exchange.over) {
      const aborted = new Error('The backend response body was destroyed');
      aborted.name = 'AbortError';
      this.exchange.fail(error ?? aborted);
    }
    callback(error);
  }
}

class Connection {
  readonly socket: Socket;
  exchange: Exchange | undefined;
  idle = false;
  idleSince = 0;
  idleMs = DEFAULT_IDLE_MS;
  private connected = false;
  private error: unknown;
  private phase = HEAD;
  private pending: Buffer | undefined;
  private answered = false;
  private awaitingHeaders = false;
  private reusable = false;
  private statusCode = 0;
  private headers: IncomingHttpHeaders | undefined;
  /** Body bytes left (LENGTH) or left in the current chunk (CHUNKED). */
  private remaining = 0;
  private chunkState = SIZE;
  private lineBytes = 0;
  /** The whole-body length when collected whole, -1 when streamed. */
  private wholeLength = -1;
  private wholeBody: Buffer | undefined;
  private filled = 0;
  private headersTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private idleTimerMs = 0;

  constructor(
    private readonly pool: Pool,
    exchange: Exchange,
  ) {
    const { options } = pool.shared;
    this.exchange = exchange;
    exchange.connection = this;
    const socket = pool.tls
      ? connectTls({
          host: pool.host,
          port: pool.port,
          servername: isIP(pool.host) === 0 ? pool.host : undefined,
          ALPNProtocols: ['http/1.1'],
          ca: options.ca,
        })
      : connectTcp({ host: pool.host, port: pool.port, noDelay: true });
    socket.setNoDelay(true);
    this.socket = socket;
    const connectTimer = setTimeout(
      () => socket.destroy(new BackendClientError('connect', `no connection within ${options.connectTimeoutMs} ms`)),
      options.connectTimeoutMs,
    );
    socket.once(pool.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(connectTimer);
      this.connected = true;
      if (this.exchange) this.start(this.exchange);
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (error) => {
      this.error = error;
    });
    socket.on('close', () => {
      clearTimeout(connectTimer);
      this.onClose();
    });
    pool.shared.all.add(this);
  }

  start(exchange: Exchange): void {
    this.exchange = exchange;
    exchange.connection = this;
    this.answered = false;
    this.awaitingHeaders = false;
    const { head, request } = exchange;
    const body = request.body;
    if (body === undefined) {
      this.socket.write(head, 'latin1');
    } else if (Buffer.isBuffer(body)) {
      // Head and body in one write (one packet for a small call).
      const out = Buffer.allocUnsafe(head.length + body.length);
      out.write(head, 0, 'latin1');
      body.copy(out, head.length);
      this.socket.write(out);
    } else {
      this.socket.write(head, 'latin1');
      upload(this, exchange, body);
      return;
    }
    this.requestSent(exchange);
  }

  requestSent(exchange: Exchange): void {
    exchange.sent = true;
    if (this.answered) return;
    this.awaitingHeaders = true;
    if (this.headersTimer) this.headersTimer.refresh();
    else this.headersTimer = setTimeout(() => this.onHeadersTimeout(), this.pool.shared.options.headersTimeoutMs).unref();
  }

  /** Ends this connection (the exchange already failed): never reused. */
  drop(): void {
    this.exchange = undefined;
    this.socket.destroy();
  }

  private onHeadersTimeout(): void {
    const ms = this.pool.shared.options.headersTimeoutMs;
    if (this.awaitingHeaders) this.exchange?.fail(new BackendClientError('headers-timeout', `no response head within ${ms} ms`));
  }

  private onData(input: Buffer): void {
    const exchange = this.exchange;
    // Bytes while idle, or after the answer, are not a response to anything: not reused.
    if (exchange === undefined) return void this.socket.destroy();
    let chunk = input;
    if (this.pending !== undefined) {
      chunk = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let offset = 0;
    while (offset < chunk.length) {
      if (this.exchange !== exchange) return void this.socket.destroy();
      if (this.phase === HEAD) offset = this.readHead(chunk, offset);
      else if (this.phase === LENGTH) offset = this.readLength(chunk, offset);
      else if (this.phase === CHUNKED) offset = this.readChunked(chunk, offset);
      else offset = this.deliver(offset === 0 ? chunk : chunk.subarray(offset)) ? chunk.length : STOP;
    }
  }

  private onEnd(): void {
    // RFC 9112 §6.3 rule 8: without Content-Length or chunked framing, the body ends with the connection.
    if (this.phase === UNTIL_CLOSE && this.exchange && this.answered) this.complete();
    else if (this.exchange === undefined) this.socket.destroy();
  }

  private onClose(): void {
    clearTimeout(this.headersTimer);
    clearTimeout(this.idleTimer);
    this.pool.shared.all.delete(this);
    if (this.idle) {
      this.idle = false;
      this.pool.idle.splice(this.pool.idle.indexOf(this), 1);
    }
    const exchange = this.exchange;
    this.exchange = undefined;
    if (exchange === undefined || exchange.over) return;
    const cause = this.error;
    if (cause instanceof BackendClientError) exchange.fail(cause);
    else if (!this.connected) exchange.fail(new BackendClientError('connect', 'could not connect to the backend', { cause }));
    else if (this.answered) exchange.fail(new BackendClientError('truncated', 'the backend closed the connection mid-body', { cause }));
    else exchange.fail(new BackendClientError('closed', 'the backend closed the connection before answering', { cause }));
  }

  /** The answer breaks RFC 9112: the exchange fails (502), the socket is dropped. */
  private refuse(message: string): false {
    this.exchange?.fail(new BackendClientError('protocol', message));
    return false;
  }

  private invalid(message: string): number {
    this.refuse(message);
    return STOP;
  }

  private readHead(chunk: Buffer, offset: number): number {
    const end = chunk.indexOf(HEAD_END, offset);
    if (end === -1) {
      if (chunk.length - offset > MAX_HEAD_BYTES) return this.invalid('response head over 64 KiB');
      this.pending = offset === 0 ? chunk : chunk.subarray(offset);
      return chunk.length;
    }
    if (end - offset > MAX_HEAD_BYTES) return this.invalid('response head over 64 KiB');
    return this.parseHead(chunk.toString('latin1', offset, end + 2)) ? end + 4 : STOP;
  }

  /** Parses a status line and fields (each line ending in CRLF); false when the answer is refused. */
  private parseHead(text: string): boolean {
    const exchange = this.exchange!;
    if (!validHeadCharacters(text)) return this.refuse('control character in the response head');
    // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
    const lineEnd = text.indexOf('\r\n');
    const minor = text.charCodeAt(7);
    const status = statusCodeAt(text, 9);
    if (!text.startsWith('HTTP/1.') || (minor !== 0x30 && minor !== 0x31) || text.charCodeAt(8) !== SP || status < 0 || (lineEnd !== 12 && text.charCodeAt(12) !== SP)) {
      return this.refuse('malformed status line');
    }
    const fields: Record<string, string | string[]> = Object.create(null);
    for (let start = lineEnd + 2; start < text.length; ) {
      const end = text.indexOf('\r\n', start);
      const first = text.charCodeAt(start);
      // RFC 9112 §5.2: obs-fold (a line starting with whitespace) is refused, not unfolded.
      if (first === SP || first === HTAB) return this.refuse('obs-fold in the response head');
      // RFC 9112 §5.1: field-name is a token, no whitespace before the colon; OWS around the value.
      const colon = text.indexOf(':', start);
      if (colon === -1 || colon > end || !isToken(text, start, colon)) return this.refuse('malformed response header field');
      let valueStart = colon + 1;
      let valueEnd = end;
      while (valueStart < valueEnd && isOws(text.charCodeAt(valueStart))) valueStart++;
      while (valueEnd > valueStart && isOws(text.charCodeAt(valueEnd - 1))) valueEnd--;
      const name = text.slice(start, colon).toLowerCase();
      const value = text.slice(valueStart, valueEnd);
      const previous = fields[name];
      if (previous === undefined) fields[name] = value;
      else if (Array.isArray(previous)) previous.push(value);
      else fields[name] = [previous, value];
      start = end + 2;
    }
    const headers = fields as IncomingHttpHeaders;
    // RFC 9110 §15.2: 1xx answers are interim, the final one follows; 101 would leave HTTP.
    if (status < 200) return status === 101 ? this.refuse('unexpected 101 Switching Protocols') : true;
    this.answered = true;
    this.awaitingHeaders = false;
    // RFC 9112 §9.3, §9.6: persistent by default in HTTP/1.1 unless "close" is among the Connection options.
    this.reusable = minor === 0x31 && !hasCloseOption(headers['connection']);
    this.idleMs = idleMsFor(headers['keep-alive']);
    const transferEncoding = headers['transfer-encoding'];
    const contentLength = headers['content-length'];
    let length = -1;
    if (transferEncoding !== undefined) {
      // RFC 9112 §6.3 rule 3: both may be smuggling; refused. Only chunked is decoded (§6.1: it is final).
      if (contentLength !== undefined) return this.refuse('both Transfer-Encoding and Content-Length');
      if (typeof transferEncoding !== 'string' || transferEncoding.toLowerCase() !== 'chunked') return this.refuse('unsupported Transfer-Encoding');
    } else if (contentLength !== undefined) {
      length = parseContentLength(contentLength);
      if (length < 0) return this.refuse('invalid Content-Length');
    }
    // RFC 9112 §6.3 rule 1: no body after HEAD, 204 or 304, whatever the fields say.
    const bodyless = exchange.request.method === 'HEAD' || status === 204 || status === 304;
    this.statusCode = status;
    this.headers = headers;
    if (length >= 0 && this.pool.shared.options.collectWhole(headers, length)) {
      this.wholeLength = bodyless ? 0 : length;
      this.wholeBody = this.wholeLength === 0 ? EMPTY : undefined;
      if (this.wholeLength === 0) this.complete();
      else this.startBody(LENGTH, length);
      return true;
    }
    this.wholeLength = -1;
    exchange.stream = new ResponseBody(exchange);
    exchange.answer({ statusCode: status, headers, body: exchange.stream });
    if (bodyless || length === 0) this.complete();
    else if (length > 0) this.startBody(LENGTH, length);
    else if (transferEncoding !== undefined) this.startBody(CHUNKED, 0);
    else {
      this.reusable = false;
      this.startBody(UNTIL_CLOSE, 0);
    }
    return true;
  }

  private startBody(phase: number, remaining: number): void {
    this.phase = phase;
    this.remaining = remaining;
    this.chunkState = SIZE;
    this.lineBytes = 0;
  }

  private readLength(chunk: Buffer, offset: number): number {
    const available = chunk.length - offset;
    const n = Math.min(available, this.remaining);
    if (this.wholeLength >= 0) {
      if (this.wholeBody === undefined) {
        if (n === this.wholeLength) {
          // The whole answer in one chunk (the usual small call): no copy.
          this.wholeBody = offset === 0 && n === chunk.length ? chunk : chunk.subarray(offset, offset + n);
          this.remaining = 0;
          this.complete();
          return offset + n;
        }
        this.wholeBody = Buffer.allocUnsafe(this.wholeLength);
        this.filled = 0;
      }
      chunk.copy(this.wholeBody, this.filled, offset, offset + n);
      this.filled += n;
    } else if (!this.deliver(offset === 0 && n === chunk.length ? chunk : chunk.subarray(offset, offset + n))) {
      return STOP;
    }
    this.remaining -= n;
    if (this.remaining === 0) this.complete();
    return offset + n;
  }

  /** RFC 9112 §7.1: chunk-size [ chunk-ext ] CRLF data CRLF …, last-chunk, trailer-section, CRLF. */
  private readChunked(chunk: Buffer, start: number): number {
    let offset = start;
    while (offset < chunk.length) {
      if (this.chunkState === DATA) {
        const available = chunk.length - offset;
        const n = Math.min(available, this.remaining);
        if (!this.deliver(chunk.subarray(offset, offset + n))) return STOP;
        offset += n;
        this.remaining -= n;
        if (this.remaining === 0) this.chunkState = DATA_CR;
        continue;
      }
      const c = chunk[offset++]!;
      switch (this.chunkState) {
        case SIZE:
        case SIZE_MORE: {
          const digit = hexValue(c);
          if (digit >= 0) {
            // 13 hex digits stay below 2^53.
            if (++this.lineBytes > 13) return this.invalid('chunk size too large');
            this.remaining = this.remaining * 16 + digit;
            this.chunkState = SIZE_MORE;
          } else if (this.chunkState === SIZE) return this.invalid('missing chunk size');
          else if (c === CR) this.chunkState = SIZE_LF;
          // RFC 9112 §7.1.1: chunk extensions (after optional whitespace and ';') are ignored.
          else if (c === 0x3b || c === SP || c === HTAB) this.chunkState = EXT;
          else return this.invalid('malformed chunk size');
          break;
        }
        case EXT:
          if (c === CR) this.chunkState = SIZE_LF;
          else if (c === LF || ++this.lineBytes > 4096) return this.invalid('malformed chunk extension');
          break;
        case SIZE_LF:
          if (c !== LF) return this.invalid('chunk size line without CRLF');
          this.lineBytes = 0;
          this.chunkState = this.remaining === 0 ? TRAILER_START : DATA;
          break;
        case DATA_CR:
          if (c !== CR) return this.invalid('chunk data longer than its size');
          this.chunkState = DATA_LF;
          break;
        case DATA_LF:
          if (c !== LF) return this.invalid('chunk data without CRLF');
          this.chunkState = SIZE;
          break;
        // RFC 9112 §7.1.2: trailer fields are read and discarded (never forwarded).
        case TRAILER_START:
          if (c === CR) this.chunkState = END_LF;
          else if (c === LF) return this.invalid('malformed trailer section');
          else this.chunkState = TRAILER;
          break;
        case TRAILER:
          if (c === CR) this.chunkState = TRAILER_LF;
          else if (c === LF || ++this.lineBytes > MAX_HEAD_BYTES) return this.invalid('malformed trailer section');
          break;
        case TRAILER_LF:
          if (c !== LF) return this.invalid('trailer line without CRLF');
          this.chunkState = TRAILER_START;
          break;
        case END_LF:
          if (c !== LF) return this.invalid('chunked body without final CRLF');
          this.complete();
          return offset;
      }
    }
    return offset;
  }

  /** Pushes body bytes to the stream, pausing the socket when it is full; false if the exchange ended. */
  private deliver(data: Buffer): boolean {
    const exchange = this.exchange!;
    if (!exchange.stream!.push(data)) this.socket.pause();
    return this.exchange === exchange;
  }

  /** The answer is complete: delivered, and the socket returns to the pool if it may. */
  private complete(): void {
    const exchange = this.exchange!;
    exchange.over = true;
    this.exchange = undefined;
    this.phase = HEAD;
    if (this.wholeLength >= 0) exchange.answer({ statusCode: this.statusCode, headers: this.headers!, body: this.wholeBody! });
    else exchange.stream!.push(null);
    this.headers = undefined;
    this.wholeBody = undefined;
    const body = exchange.request.body;
    if (!exchange.sent) {
      // Answered before the request body ended: the rest is not sent, the socket not reused.
      if (body !== undefined && !Buffer.isBuffer(body)) body.destroy();
      this.socket.destroy();
      return;
    }
    if (!this.reusable || this.idleMs <= 0 || this.pool.shared.closed) return void this.socket.destroy();
    if (this.socket.isPaused()) this.socket.resume();
    this.idle = true;
    this.idleSince = Date.now();
    if (this.idleTimer !== undefined && this.idleTimerMs === this.idleMs) this.idleTimer.refresh();
    else {
      clearTimeout(this.idleTimer);
      this.idleTimerMs = this.idleMs;
      this.idleTimer = setTimeout(() => this.idle && this.socket.destroy(), this.idleMs).unref();
    }
    this.pool.idle.push(this);
  }
}

/** Streams a request body: Content-Length as declared, else chunked (RFC 9112 §7.1); back-pressured. */
function upload(connection: Connection, exchange: Exchange, body: Readable): void {
  const { socket } = connection;
  const declared = exchange.request.headers['content-length'];
  const length = declared === undefined ? -1 : Number(declared);
  let sent = 0;
  const resume = () => {
    if (!exchange.over) body.resume();
  };
  body.on('data', (chunk: Buffer) => {
    if (exchange.over) return;
    let flushed: boolean;
    if (length < 0) {
      if (chunk.length === 0) return; // a zero-size chunk would end the body
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      flushed = socket.write('\r\n', 'latin1');
      socket.uncork();
    } else {
      sent += chunk.length;
      // More than declared would be read as the start of another request: never written.
      if (sent > length) return exchange.fail(new BackendClientError('request', 'request body longer than its Content-Length'));
      flushed = socket.write(chunk);
    }
    if (!flushed) {
      body.pause();
      socket.once('drain', resume);
    }
  });
  body.on('end', () => {
    if (exchange.over) return;
    if (length < 0) socket.write('0\r\n\r\n', 'latin1');
    else if (sent !== length) return exchange.fail(new BackendClientError('request', 'request body shorter than its Content-Length'));
    connection.requestSent(exchange);
  });
  body.on('close', () => {
    if (!exchange.sent) exchange.fail(new BackendClientError('request', 'the request body closed before its end'));
  });
}

/** The request head, or undefined when a method, name or value may not be sent. */
function requestHead({ url, method, headers, body }: ClientRequest): string | undefined {
  if (!isToken(method, 0, method.length)) return undefined;
  let head = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
  let declaredLength: string | undefined;
  for (const name in headers) {
    const value = headers[name]!;
    // RFC 9110 §5.1, §5.5: a token name; a value without CTLs (a CR, LF or NUL would forge lines).
    if (!isToken(name, 0, name.length) || !isFieldValue(value)) return undefined;
    // Framing and routing are this client's (RFC 9112 §6, §3.2).
    if (name === 'content-length') declaredLength = value;
    else if (name !== 'host' && name !== 'transfer-encoding' && name !== 'connection') head += `${name}: ${value}\r\n`;
  }
  if (Buffer.isBuffer(body)) return `${head}content-length: ${body.length}\r\n\r\n`;
  if (body !== undefined) {
    if (declaredLength === undefined) return `${head}transfer-encoding: chunked\r\n\r\n`;
    return isDigits(declaredLength) ? `${head}content-length: ${declaredLength}\r\n\r\n` : undefined;
  }
  // RFC 9110 §8.6: a POST without content says so.
  return method === 'POST' || method === 'PUT' || method === 'PATCH' ? `${head}content-length: 0\r\n\r\n` : `${head}\r\n`;
}

/** RFC 9110 §8.6: 1*DIGIT; a list of one repeated value is that value, different values are refused. */
function parseContentLength(value: string | string[]): number {
  if (typeof value === 'string' && isDigits(value)) return Number(value);
  let length = -1;
  for (const part of (typeof value === 'string' ? value : value.join(',')).split(',')) {
    const text = part.trim();
    if (!isDigits(text) || (length >= 0 && Number(text) !== length)) return -1;
    length = Number(text);
  }
  return length;
}

function hasCloseOption(value: string | string[] | undefined): boolean {
  if (value === undefined || value === 'keep-alive') return false;
  return (typeof value === 'string' ? value : value.join(','))
    .toLowerCase()
    .split(',')
    .some((option) => option.trim() === 'close');
}

/** `Keep-Alive: timeout=N` (RFC 2068 §19.7.1.1): the server's idle limit; expire one second earlier. */
function idleMsFor(value: string | string[] | undefined): number {
  if (typeof value !== 'string') return DEFAULT_IDLE_MS;
  const at = value.indexOf('timeout=');
  if (at < 0) return DEFAULT_IDLE_MS;
  const seconds = Number.parseInt(value.slice(at + 8), 10);
  return Number.isFinite(seconds) ? (seconds - 1) * 1000 : DEFAULT_IDLE_MS;
}

/** Three digits at `at`, followed by the line's end or a space checked by the caller; -1 otherwise. */
function statusCodeAt(text: string, at: number): number {
  let code = 0;
  for (let i = at; i < at + 3; i++) {
    const digit = text.charCodeAt(i) - 0x30;
    if (!(digit >= 0 && digit <= 9)) return -1;
    code = code * 10 + digit;
  }
  return code >= 100 ? code : -1;
}

/** RFC 9110 §5.5: no CTL but HTAB in a head; CR only as part of CRLF (RFC 9112 §2.2). */
function validHeadCharacters(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7f) return false;
    if (c >= 0x20 || c === HTAB) continue;
    if (c !== CR || text.charCodeAt(++i) !== LF) return false;
  }
  return true;
}

function isFieldValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== HTAB) || c === 0x7f || c > 0xff) return false;
  }
  return true;
}

/** RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

function isToken(text: string, start: number, end: number): boolean {
  if (start === end) return false;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c > 127 || TCHAR[c] === 0) return false;
  }
  return true;
}

function isDigits(text: string): boolean {
  if (text.length === 0 || text.length > 15) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

function isOws(c: number): boolean {
  return c === SP || c === HTAB;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
