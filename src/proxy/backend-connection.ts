import type { IncomingHttpHeaders } from 'node:http';
import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { connect as connectTls, rootCertificates } from 'node:tls';
import type { BackendClientOptions, ClientExchange, ClientRequest, ClientResponse } from './backend-client.ts';
import { ChunkedDecoder, MAX_HEAD_BYTES, parseResponseHead } from './http1.ts';

/**
 * One backend connection of backend-client.ts and the exchange it carries: writes the request,
 * parses the answer as it arrives (RFC 9112), hands it over whole or as a back-pressured stream,
 * and goes back to its pool only after a complete, persistent exchange.
 */

/** Idle sockets expire after this without a Keep-Alive hint (node:http servers close at 5 s). */
const DEFAULT_IDLE_MS = 4000;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);
/** A response head may arrive in at most this many reads (real servers send it in one or two). */
const MAX_HEAD_PIECES = 256;
/** A reader's offset meaning: stop reading this chunk (the exchange ended). */
const STOP = Number.MAX_SAFE_INTEGER;
// Parser phases: the head, then a body framed by length, by chunks or by the connection's end.
const HEAD = 0;
const LENGTH = 1;
const CHUNKED = 2;
const UNTIL_CLOSE = 3;

/**
 * Why an exchange failed. 'connect': no connection; 'request': a header refused before sending;
 * 'closed': the connection ended before the answer; 'protocol': the answer breaks RFC 9112;
 * 'truncated': a body ended early.
 */
export class BackendClientError extends Error {
  readonly reason: 'connect' | 'request' | 'headers-timeout' | 'closed' | 'protocol' | 'truncated';
  constructor(reason: BackendClientError['reason'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BackendClientError';
    this.reason = reason;
  }
}

export interface Shared {
  options: BackendClientOptions;
  toError: (error: unknown) => unknown;
  all: Set<Connection>;
  closed: boolean;
}

export interface Pool {
  shared: Shared;
  tls: boolean;
  host: string;
  port: number;
  /** Idle connections, the most recently used last (LIFO). */
  idle: Connection[];
}

function ignore(): void {}

/** One request and its answer. `over` once it completed or failed; nothing happens after. */
export class Exchange implements ClientExchange {
  readonly response: Promise<ClientResponse>;
  private resolve!: (response: ClientResponse) => void;
  private reject!: (error: unknown) => void;
  connection: Connection | undefined;
  stream: ResponseBody | undefined;
  /** The request's last byte was written. */
  sent = false;
  settled = false;
  over = false;

  readonly request: ClientRequest;
  readonly head: string;
  private readonly toError: (error: unknown) => unknown;

  constructor(request: ClientRequest, head: string, toError: (error: unknown) => unknown) {
    this.request = request;
    this.head = head;
    this.toError = toError;
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
  private readonly exchange: Exchange;
  constructor(exchange: Exchange) {
    super();
    this.exchange = exchange;
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

export class Connection {
  readonly socket: Socket;
  exchange: Exchange | undefined;
  idle = false;
  idleSince = 0;
  idleMs = DEFAULT_IDLE_MS;
  private connected = false;
  private error: unknown;
  private phase = HEAD;
  private pending: Buffer | undefined;
  /** Reads that carried part of the current response head (a head trickled byte by byte is refused). */
  private headPieces = 0;
  private answered = false;
  private awaitingHeaders = false;
  private reusable = false;
  private statusCode = 0;
  private headers: IncomingHttpHeaders | undefined;
  /** Body bytes left (LENGTH). */
  private remaining = 0;
  private chunked: ChunkedDecoder | undefined;
  /** The whole-body length when collected whole, -1 when streamed. */
  private wholeLength = -1;
  private wholeBody: Buffer | undefined;
  private filled = 0;
  private headersTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private idleTimerMs = 0;

  private readonly pool: Pool;

  constructor(pool: Pool, exchange: Exchange) {
    this.pool = pool;
    const { options } = pool.shared;
    this.exchange = exchange;
    exchange.connection = this;
    const socket = pool.tls
      ? connectTls({
          host: pool.host,
          port: pool.port,
          servername: isIP(pool.host) === 0 ? pool.host : undefined,
          ALPNProtocols: ['http/1.1'],
          ca: options.ca === undefined ? undefined : [...rootCertificates, options.ca],
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
      else if (this.phase === CHUNKED) offset = this.readChunked(chunk, offset, exchange);
      else offset = this.deliver(offset === 0 ? chunk : chunk.subarray(offset)) ? chunk.length : STOP;
    }
  }

  private onEnd(): void {
    // RFC 9112 §6.3 rule 8: a body without framing ends with the connection.
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
      // Each piece is joined to the ones before: bound the copying a trickling backend can cause.
      if (++this.headPieces > MAX_HEAD_PIECES) return this.invalid(`response head in more than ${MAX_HEAD_PIECES} reads`);
      this.pending = offset === 0 ? chunk : chunk.subarray(offset);
      return chunk.length;
    }
    this.headPieces = 0;
    if (end - offset > MAX_HEAD_BYTES) return this.invalid('response head over 64 KiB');
    return this.onHead(chunk.toString('latin1', offset, end + 2)) ? end + 4 : STOP;
  }

  /** Sets up the body of a final answer; false when the answer is refused. */
  private onHead(text: string): boolean {
    const exchange = this.exchange!;
    const head = parseResponseHead(text);
    if (typeof head === 'string') return this.refuse(head);
    const { statusCode, headers, length } = head;
    // RFC 9110 §15.2: 1xx answers are interim, the final one follows; 101 would leave HTTP.
    if (statusCode < 200) return statusCode === 101 ? this.refuse('unexpected 101 Switching Protocols') : true;
    this.answered = true;
    this.awaitingHeaders = false;
    this.reusable = head.persistent;
    this.idleMs = head.keepAliveSeconds === undefined ? DEFAULT_IDLE_MS : (head.keepAliveSeconds - 1) * 1000;
    // RFC 9112 §6.3 rule 1: no body after HEAD, 204 or 304, whatever the fields say.
    const bodyless = exchange.request.method === 'HEAD' || statusCode === 204 || statusCode === 304;
    this.statusCode = statusCode;
    this.headers = headers;
    if (length >= 0 && this.pool.shared.options.collectWhole(headers, length)) {
      this.wholeLength = bodyless ? 0 : length;
      this.wholeBody = this.wholeLength === 0 ? EMPTY : undefined;
      this.remaining = this.wholeLength;
      this.phase = LENGTH;
      if (this.wholeLength === 0) this.complete();
      return true;
    }
    this.wholeLength = -1;
    exchange.stream = new ResponseBody(exchange);
    exchange.answer({ statusCode, headers, body: exchange.stream });
    this.remaining = length;
    if (bodyless || length === 0) this.complete();
    else if (length > 0) this.phase = LENGTH;
    else if (head.chunked) {
      this.phase = CHUNKED;
      this.chunked ??= new ChunkedDecoder();
      this.chunked.reset();
    } else {
      // RFC 9112 §6.3 rule 8: the body ends with the connection, which is then not reused.
      this.reusable = false;
      this.phase = UNTIL_CLOSE;
    }
    return true;
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

  private readChunked(chunk: Buffer, offset: number, exchange: Exchange): number {
    const decoder = this.chunked!;
    const next = decoder.read(chunk, offset, this.deliverChunk);
    if (decoder.error !== undefined) return this.invalid(decoder.error);
    if (this.exchange !== exchange) return STOP;
    if (decoder.done) this.complete();
    return next;
  }

  private readonly deliverChunk = (data: Buffer) => this.deliver(data);

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
