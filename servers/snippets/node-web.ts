/**
 * node:http ⇄ web `Request`/`Response`, for the v2 SDK's web-standard handlers (the SDK's own
 * `@modelcontextprotocol/node` adapter is not a dependency here).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';

/** The Node request as a web `Request` for the SDK; aborted when the client goes away first. */
export function webRequest(req: IncomingMessage, res: ServerResponse, url: URL, body: unknown): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    // The body is re-serialized below, so its length is not the one the client sent.
    if (name === 'content-length' || value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item);
  }
  const gone = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  return new Request(url, {
    method: req.method ?? 'GET',
    headers,
    signal: gone.signal,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

/** Writes the SDK's web `Response` (JSON or an SSE stream) to the Node response, streaming. */
export async function sendWebResponse(res: ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  res.writeHead(response.status, headers);
  if (!response.body) {
    res.end();
    return;
  }
  res.flushHeaders();
  try {
    await pipeline(Readable.fromWeb(response.body as NodeReadableStream<Uint8Array>), res);
  } catch (error) {
    // The client hung up on a stream: nothing left to answer.
    if ((error as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw error;
  }
}

