import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serveWorker } from '../lib/procs.ts';

/**
 * The trivial, fast MCP backend of benchmarks 1, 3 and 4, on a raw node:http server (stateless,
 * no session): POST /mcp answers any JSON-RPC request (a tools/call) with one fixed result in
 * JSON response mode; GET /mcp opens an idle SSE stream; GET /sse opens a legacy stream whose
 * first event is `endpoint`; `broadcast` (IPC) writes one notification to every open stream.
 */
const RESULT = Buffer.from(
  JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'pong' }], isError: false } }),
);
const JSON_HEADERS = { 'content-type': 'application/json', 'content-length': String(RESULT.length) };
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };

const streams = new Set<ServerResponse>();
let sessions = 0;

const server = createServer((req, res) => {
  if (req.method === 'POST') {
    req.on('end', () => res.writeHead(req.url === '/message' || req.url?.startsWith('/message?') ? 202 : 200, JSON_HEADERS).end(RESULT));
    req.resume();
    return;
  }
  if (req.method === 'GET' && (req.url === '/mcp' || req.url === '/sse')) {
    res.writeHead(200, SSE_HEADERS);
    if (req.url === '/sse') res.write(`event: endpoint\ndata: /message?sessionId=s${++sessions}\n\n`);
    else res.write(': open\n\n');
    streams.add(res);
    res.on('close', () => streams.delete(res));
    return;
  }
  res.writeHead(404).end();
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  serveWorker({ url: `http://127.0.0.1:${port}` }, async (message) => {
    if (message['type'] === 'broadcast') {
      const event = `event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"${String(message['marker'])}"}}\n\n`;
      for (const res of streams) res.write(event);
      return { streams: streams.size };
    }
    if (message['type'] === 'count') return { streams: streams.size };
    throw new Error(`unknown message ${String(message['type'])}`);
  });
});
