import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';

/** A JSON answer on a plain node:http response (what fastify's reply.send(object) writes). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void {
  const payload = JSON.stringify(body);
  headers['content-type'] = 'application/json; charset=utf-8';
  headers['content-length'] = Buffer.byteLength(payload);
  res.writeHead(status, headers);
  res.end(payload);
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
