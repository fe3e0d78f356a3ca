import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { serveWorker, workerArgs } from '../lib/procs.ts';

/**
 * Benchmark 1's reference for Node's own HTTP cost: the leanest pass-through reverse proxy in
 * Node (node:http server, one undici keep-alive pool, body read whole, answer written in one
 * call), with no auth, no header policy, no identity assertion. What it costs per call is what
 * any Node data plane pays before the gateway does anything of its own.
 */
const { backendUrl } = workerArgs<{ backendUrl: string }>();
const backend = new URL(backendUrl);
const pool = new Pool(backend.origin);

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const answer: Buffer[] = [];
    let status = 502;
    let contentType = 'application/json';
    pool.dispatch(
      {
        path: backend.pathname,
        method: 'POST',
        headers: { 'content-type': String(req.headers['content-type']), accept: String(req.headers.accept), 'content-length': String(body.length) },
        body,
      },
      {
        onConnect() {},
        onHeaders(statusCode, rawHeaders) {
          status = statusCode;
          for (let i = 0; i < rawHeaders.length; i += 2) {
            if (String(rawHeaders[i]).toLowerCase() === 'content-type') contentType = String(rawHeaders[i + 1]);
          }
          return true;
        },
        onData(chunk) {
          answer.push(chunk);
          return true;
        },
        onComplete() {
          const out = Buffer.concat(answer);
          res.writeHead(status, { 'content-type': contentType, 'content-length': out.length });
          res.end(out);
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
