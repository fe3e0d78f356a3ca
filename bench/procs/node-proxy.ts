import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool, util } from 'undici';
import { serveWorker, workerArgs } from '../lib/procs.ts';

/**
 * Benchmark 1's reference for Node's own HTTP cost: the leanest pass-through reverse proxy in
 * Node on the same client library as the gateway (node:http server, one undici pool with
 * `dispatch`, request body read whole), with no auth, no header policy, no identity assertion;
 * `setHeaders` are added to every request (the real backend's key, as nginx injects it). An
 * answer of known length is written in one call; any other (SSE) is relayed as it arrives. What
 * it costs per call is what any Node data plane pays before the gateway does anything of its own.
 */
const { backendUrl, setHeaders = {} } = workerArgs<{ backendUrl: string; setHeaders?: Record<string, string> }>();
const backend = new URL(backendUrl);
const pool = new Pool(backend.origin);
/** RFC 9110 §7.6.1: hop-by-hop fields, not forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'upgrade', 'te', 'trailer', 'proxy-connection']);

function forwarded(incoming: IncomingHttpHeaders, extra: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in incoming) {
    const value = incoming[name];
    if (typeof value === 'string' && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return Object.assign(out, extra);
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const body = chunks.length === 0 ? undefined : Buffer.concat(chunks);
    const headers = forwarded(req.headers, setHeaders);
    const answer: Buffer[] = [];
    let whole = false;
    pool.dispatch(
      { path: backend.pathname, method: req.method as 'POST', headers, body },
      {
        onConnect() {},
        onHeaders(statusCode, rawHeaders, resume) {
          const response = util.parseHeaders(rawHeaders) as IncomingHttpHeaders;
          const out = forwarded(response, {});
          whole = response['content-length'] !== undefined;
          if (whole) {
            res.statusCode = statusCode;
            for (const name in out) res.setHeader(name, out[name]!);
            return true;
          }
          res.writeHead(statusCode, out);
          res.on('drain', resume);
          return true;
        },
        onData(chunk) {
          if (whole) return answer.push(chunk) > 0;
          return res.write(chunk);
        },
        onComplete() {
          if (whole) {
            const out = answer.length === 1 ? answer[0]! : Buffer.concat(answer);
            res.setHeader('content-length', out.length);
            res.end(out);
          } else {
            res.end();
          }
        },
        onError(error) {
          res.destroy(error);
        },
      },
    );
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  serveWorker({ url: `http://127.0.0.1:${port}${backend.pathname}` }, async () => ({}));
});
