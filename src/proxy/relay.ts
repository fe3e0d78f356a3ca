import type { ServerResponse } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { tooLarge, tooSlow } from './errors.ts';

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

/**
 * Copies a backend body to the client as it arrives (never buffered whole), honouring
 * back-pressure. The response head goes out with the first chunk when it is already there (one
 * write), else at once. On SSE streams a keep-alive comment is written when nothing was written
 * for a while, only between events. A backend stream that dies mid-way ends the client's stream
 * (SSE, after `lastWords`) or drops the connection (anything else, so a truncated body is not
 * taken as complete). Events rather than an async iterator: this runs on every SSE answer.
 */
export function relay(
  body: Readable,
  res: ServerResponse,
  options: { sse: boolean; keepAlive: KeepAlive; prefix?: string; lastWords?: () => string | undefined },
): Promise<void> {
  return new Promise((resolve) => {
    /** The stream's last four bytes (the start counts as a boundary). */
    let tail = LF_LF;
    const atBoundary = () => (tail & 0xffff) === LF_LF || (tail & 0xffff) === CR_CR || tail >>> 0 === CRLF_CRLF;
    const idle: IdleStream = {
      idleTicks: 0,
      onIdle() {
        if (atBoundary() && !res.writableEnded) res.write(SSE_KEEP_ALIVE);
        idle.idleTicks = 0;
      },
    };
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      if (options.sse) options.keepAlive.delete(idle);
      body.off('data', onData);
      res.off('close', onClose);
      res.off('drain', onDrain);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      if (res.destroyed) return;
      for (let i = Math.max(0, chunk.length - 4); i < chunk.length; i++) tail = (tail << 8) | chunk[i]!;
      idle.idleTicks = 0;
      if (!res.write(chunk)) {
        body.pause();
        res.once('drain', onDrain);
      }
    };
    const onDrain = () => body.resume();
    const onClose = () => finish();
    body.on('data', onData);
    body.once('end', () => {
      res.end();
      finish();
    });
    // Stays attached: a body destroyed after the end (the client went away) must not throw.
    const onError = () => {
      if (finished) return;
      if (!options.sse) res.destroy();
      else {
        // Between events, tell the client what its pending request will never get (see lastWords).
        const farewell = atBoundary() ? options.lastWords?.() : undefined;
        if (farewell && !res.destroyed) res.write(farewell);
        res.end();
      }
      finish();
    };
    body.on('error', onError);
    res.once('close', onClose);
    if (options.prefix) res.write(options.prefix);
    if (body.readableLength > 0) {
      // The first chunk (often the whole answer) is already here: head, chunk and end go out
      // in one write when they arrive together.
      res.cork();
      setImmediate(() => res.uncork());
    } else if (!options.prefix) {
      res.flushHeaders();
    }
    if (options.sse) options.keepAlive.add(idle);
    // Failed before this listened (between legacy-sse's first event and here): its 'error' is past.
    if (body.destroyed && !body.readableEnded) return onError();
    body.resume(); // also when paused by a reader before (legacy-sse's first event)
  });
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

