import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { GatewayError } from './forward.ts';

/** An SSE comment (WHATWG HTML §9.2.6: lines starting with ':' are ignored by clients). */
const SSE_KEEP_ALIVE = ': keep-alive\n\n';

/**
 * Copies a backend body to the client as it arrives (never buffered whole), honouring
 * back-pressure. On SSE streams a keep-alive comment is written after `keepAliveMs` without
 * output, only between events. A backend stream that dies mid-way ends the client's stream
 * (SSE) or drops the connection (anything else, so a truncated body is not taken as complete).
 */
export async function relay(
  body: AsyncIterable<Buffer> | Iterable<Buffer>,
  res: ServerResponse,
  options: { sse: boolean; keepAliveMs: number; lastWords?: () => string | undefined },
) {
  let lastWriteAt = Date.now();
  let tail = '\n\n';
  const timer = options.sse
    ? setInterval(() => {
        const atBoundary = tail.endsWith('\n\n') || tail.endsWith('\r\n\r\n') || tail.endsWith('\r\r');
        if (atBoundary && Date.now() - lastWriteAt >= options.keepAliveMs && !res.writableEnded) {
          res.write(SSE_KEEP_ALIVE);
          lastWriteAt = Date.now();
        }
      }, Math.max(10, Math.floor(options.keepAliveMs / 2)))
    : undefined;
  try {
    for await (const chunk of body) {
      if (res.destroyed) return;
      tail = (tail + chunk.subarray(Math.max(0, chunk.length - 4)).toString('latin1')).slice(-4);
      lastWriteAt = Date.now();
      if (!res.write(chunk)) await drainOrClose(res);
    }
    res.end();
  } catch {
    if (!options.sse) res.destroy();
    else {
      // Between events, tell the client what its pending request will never get (see lastWords).
      const farewell = tail.endsWith('\n\n') ? options.lastWords?.() : undefined;
      if (farewell && !res.destroyed) res.write(farewell);
      res.end();
    }
  } finally {
    clearInterval(timer);
  }
}

/** Waits for back-pressure to clear or the client to go, leaving no listener behind (long streams). */
async function drainOrClose(res: ServerResponse): Promise<void> {
  const done = new AbortController();
  try {
    await Promise.race([once(res, 'drain', { signal: done.signal }), once(res, 'close', { signal: done.signal })]);
  } finally {
    done.abort();
  }
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

export function tooLarge(maxBytes: number): GatewayError {
  return new GatewayError(413, `Payload Too Large: request body must not exceed ${maxBytes} bytes`);
}

/** RFC 9110 §15.5.9 (answered with Connection: close, respond.ts). */
export function tooSlow(timeoutMs: number): GatewayError {
  return new GatewayError(408, `Request Timeout: the request body did not arrive within ${timeoutMs} ms`);
}
