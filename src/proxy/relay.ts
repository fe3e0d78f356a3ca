import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { tooLarge, tooSlow } from './errors.ts';
import type { BodySink } from './forward.ts';
import { SseEvents, type SseWatcher } from './sse-events.ts';

/** An SSE comment (WHATWG HTML §9.2.6: lines starting with ':' are ignored by clients). */
const SSE_KEEP_ALIVE = ': keep-alive\n\n';
// The last bytes of an SSE stream at an event boundary (WHATWG HTML §9.2.6: an event ends with a
// blank line: LF LF, CR LF CR LF or CR CR), read from the stream's last four bytes as one number.
const LF_LF = 0x0a0a;
const CR_CR = 0x0d0d;
const CRLF_CRLF = 0x0d0a0d0a;

/** One keep-alive ticker for every open SSE stream (no timer per stream or per call). */
export interface KeepAlive {
  add(stream: IdleStream): void;
  delete(stream: IdleStream): void;
  close(): void;
}

interface IdleStream {
  /** Ticks since the stream last wrote; reset on every write. */
  idleTicks: number;
  onIdle(): void;
}

/** Ticks per keep-alive interval: a stream's silence is known to within a quarter of it. */
const TICKS_PER_INTERVAL = 4;

/**
 * A stream that has written nothing for at least `keepAliveMs` (its silence counted in ticks of
 * a quarter of it, so up to 1.25 × keepAliveMs) gets `onIdle()`.
 */
export function createKeepAlive(keepAliveMs: number): KeepAlive {
  const streams = new Set<IdleStream>();
  const timer = setInterval(() => {
    // The first tick after a write may come at once: one more than a full interval's ticks.
    for (const stream of streams) if (++stream.idleTicks > TICKS_PER_INTERVAL) stream.onIdle();
  }, Math.max(10, Math.floor(keepAliveMs / TICKS_PER_INTERVAL)));
  timer.unref();
  return {
    add: (stream) => streams.add(stream),
    delete: (stream) => streams.delete(stream),
    close: () => clearInterval(timer),
  };
}

export interface RelayOptions {
  sse: boolean;
  keepAlive: KeepAlive;
  /** Written before the body (the legacy transport's endpoint event). */
  prefix?: string | undefined;
  /** What an SSE stream that dies between events says before it ends (see sendBackendResponse). */
  lastWords?: (() => string | undefined) | undefined;
  /** Reads the SSE answer's events as they are relayed (the operations' outcomes); only on SSE. */
  watcher?: SseWatcher | undefined;
}

/**
 * Copies a backend body to the client as it arrives (never buffered whole), honouring
 * back-pressure; fed by the backend exchange itself (relayDirectly) or by a Readable (relay).
 * The response head goes out with the first chunk when it is already there (one write), else at
 * once; an answer that was complete before it was relayed goes out whole with a Content-Length.
 * On SSE streams a keep-alive comment is written when nothing was written for a while, only
 * between events. A backend stream that dies mid-way ends the client's stream (SSE, after
 * `lastWords`) or drops the connection (anything else, so a truncated body is not taken as
 * complete). A `watcher` (the audit trail's, the spans') reads the events on the way, so a watched
 * answer takes the same path. One object per answer, no closures: this runs on every SSE answer
 * (benchmark 1).
 */
export class ResponseSink implements BodySink, IdleStream {
  idleTicks = 0;
  private readonly res: ServerResponse;
  private readonly statusCode: number;
  private readonly headers: OutgoingHttpHeaders;
  private readonly options: RelayOptions;
  /** The stream's last four bytes (the start counts as a boundary). */
  private tail = LF_LF;
  private resume: (() => void) | undefined;
  private finished = false;
  /** The watcher's reader, until it stops watching. */
  private events: SseEvents | undefined;

  constructor(res: ServerResponse, statusCode: number, headers: OutgoingHttpHeaders, options: RelayOptions) {
    this.res = res;
    this.statusCode = statusCode;
    this.headers = headers;
    this.options = options;
    if (options.watcher !== undefined && options.sse) this.events = new SseEvents(options.watcher);
  }

  start(chunks: Buffer[], ended: boolean | Error, resume: () => void): boolean {
    const res = this.res;
    if (ended === true && this.options.prefix === undefined) {
      if (this.events !== undefined) for (const chunk of chunks) this.see(chunk);
      // All of it arrived before it was relayed (a tool call's one event): one write, as a whole body.
      this.finished = true;
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      // RFC 9110 §8.6: no Content-Length on a 204 (nor on a 304, whose body is absent anyway).
      if (this.statusCode !== 204 && this.statusCode !== 304) this.headers['content-length'] = body.length;
      res.writeHead(this.statusCode, this.headers);
      res.end(body);
      return true;
    }
    this.open(chunks.length > 0, resume);
    let flowing = true;
    for (const chunk of chunks) flowing = this.write(chunk);
    if (ended === true) this.end();
    else if (ended !== false) this.fail(ended);
    return flowing;
  }

  /**
   * Writes the head (and prefix); with data at hand, holds them for one write with it. `resume`
   * restarts the body after a write returned false.
   */
  open(dataAtHand: boolean, resume: () => void): void {
    this.resume = resume;
    const res = this.res;
    res.writeHead(this.statusCode, this.headers);
    if (this.options.prefix) res.write(this.options.prefix);
    if (dataAtHand) {
      res.cork();
      setImmediate(uncork, res);
    } else if (!this.options.prefix) {
      res.flushHeaders();
    }
    if (this.options.sse) this.options.keepAlive.add(this);
  }

  write(chunk: Buffer): boolean {
    const res = this.res;
    if (this.finished || res.destroyed) return true;
    if (this.events !== undefined) this.see(chunk);
    let tail = this.tail;
    for (let i = Math.max(0, chunk.length - 4); i < chunk.length; i++) tail = (tail << 8) | chunk[i]!;
    this.tail = tail;
    this.idleTicks = 0;
    if (res.write(chunk)) return true;
    res.once('drain', this.resume!);
    return false;
  }

  end(): void {
    if (this.close()) this.res.end();
  }

  fail(_error: Error): void {
    if (!this.close()) return;
    const res = this.res;
    if (res.destroyed) return;
    if (!this.options.sse) {
      res.destroy();
      return;
    }
    // Between events, tell the client what its pending request will never get (see lastWords).
    const farewell = this.atBoundary() ? this.options.lastWords?.() : undefined;
    if (farewell) res.write(farewell);
    res.end();
  }

  /** Stops relaying (the client went away, or the body ended); false when already stopped. */
  close(): boolean {
    if (this.finished) return false;
    this.finished = true;
    if (this.options.sse) this.options.keepAlive.delete(this);
    return true;
  }

  onIdle(): void {
    if (this.atBoundary() && !this.res.writableEnded) this.res.write(SSE_KEEP_ALIVE);
    this.idleTicks = 0;
  }

  /** Hands the chunk's complete events to the watcher (before they reach the client). */
  private see(chunk: Buffer): void {
    // Undefined once the watcher stopped watching (an earlier chunk of the same write may have done it).
    if (this.events !== undefined && !this.events.push(chunk)) this.events = undefined;
  }

  private atBoundary(): boolean {
    const tail = this.tail;
    return (tail & 0xffff) === LF_LF || (tail & 0xffff) === CR_CR || tail >>> 0 === CRLF_CRLF;
  }
}

function uncork(res: ServerResponse): void {
  res.uncork();
}

/**
 * Relays a body that is a Readable (one a policy filter or the audit trail reads on its way, or
 * the legacy transport's stream) into `sink`. The body is resumed (also when paused by a reader
 * before, as legacy-sse's first event).
 */
export function relay(body: Readable, res: ServerResponse, sink: ResponseSink): void {
  const onData = (chunk: Buffer) => {
    if (!sink.write(chunk)) body.pause();
  };
  const detach = () => {
    body.off('data', onData);
    res.off('close', onClose);
  };
  const onEnd = () => {
    detach();
    sink.end();
  };
  // Stays attached: a body destroyed after the end (the client went away) must not throw.
  const onError = (error: Error) => {
    detach();
    sink.fail(error);
  };
  const onClose = () => {
    detach();
    sink.close();
  };
  sink.open(body.readableLength > 0, () => body.resume());
  // Failed before this listened (between legacy-sse's first event and here): its 'error' is past.
  if (body.destroyed && !body.readableEnded) {
    sink.fail(new Error('the backend stream failed'));
    return;
  }
  body.on('data', onData);
  body.once('end', onEnd);
  body.on('error', onError);
  res.once('close', onClose);
  body.resume();
}

/**
 * Counts request bytes on their way to the backend; past the limit the forward fails with 413, and
 * with 408 when the body has not ended within `timeoutMs` (the backend request is then aborted).
 */
export function limitBytes(maxBytes: number, timeoutMs: number): Transform {
  let received = 0;
  const limited = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > maxBytes) callback(tooLarge(maxBytes));
      else callback(null, chunk);
    },
    flush(callback) {
      clearTimeout(timer);
      callback();
    },
  });
  const timer = setTimeout(() => limited.destroy(tooSlow(timeoutMs)), timeoutMs);
  limited.once('close', () => clearTimeout(timer));
  return limited;
}

/**
 * Reads a whole body, refusing more than maxBytes (small bodies, and where policy must read it),
 * or one that has not ended within timeoutMs (408).
 */
export function readBounded(source: Readable, maxBytes: number, timeoutMs: number): Promise<Buffer> {
  const arrived = arrivedWhole(source, maxBytes);
  if (arrived !== undefined) return Promise.resolve(arrived);
  // Events rather than an async iterator: this runs on every small call (benchmark 1).
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > maxBytes) {
        cleanup();
        source.resume(); // drain the rest so the connection stays usable
        reject(tooLarge(maxBytes));
      } else {
        chunks.push(chunk);
      }
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onClose = () => {
      cleanup();
      reject(new Error('body ended early'));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(tooSlow(timeoutMs));
    }, timeoutMs);
    function cleanup() {
      clearTimeout(timer);
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onError);
      source.off('close', onClose);
    }
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', onError);
    source.on('close', onClose);
  });
}


/**
 * A request body that has all arrived, taken at once: no timer, listeners or promise per call.
 * All arrived: node:http parsed the whole message, or (with `expectedBytes`, its Content-Length)
 * every byte of it is buffered; node:http parses a small body sent with its head right after the
 * request handler's synchronous part, so one microtask later (streamable-http.ts). Undefined when
 * it has not, or is being read already. Over maxBytes: 413.
 */
export function arrivedWhole(source: Readable, maxBytes: number, expectedBytes?: number): Buffer | undefined {
  if (source.readableFlowing !== null || source.readableEncoding !== null) return undefined;
  const length = source.readableLength;
  const complete = (source as IncomingMessage).complete === true;
  if (!complete && length !== expectedBytes) return undefined;
  if (length > maxBytes) throw tooLarge(maxBytes);
  const data = source.read() as Buffer | null;
  const whole = data === null ? (length === 0 ? EMPTY : undefined) : data.length === length ? data : undefined;
  // Not what was buffered after all (should not happen): give it back and read by events.
  if (whole === undefined) {
    if (data !== null) source.unshift(data);
    return undefined;
  }
  // Its end is still to be parsed: flowing, the request ends as one read by events does.
  if (!complete) source.resume();
  return whole;
}

const EMPTY = Buffer.alloc(0);
