import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

/** One request as the backend saw it. */
export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

export interface McpBackend {
  url: string;
  /** Streamable HTTP endpoint. */
  mcpUrl: string;
  /** Legacy HTTP+SSE endpoint (messages go to /message?sessionId=…). */
  sseUrl: string;
  /** Every request received, in order. */
  requests: SeenRequest[];
  /** Requests whose client went away before the answer was finished. */
  aborts: SeenRequest[];
  /** Resolves when the next abort is observed. */
  nextAbort(): Promise<SeenRequest>;
  close(): Promise<void>;
}

const PNG_1PX =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV_EMPTY = 'UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=';
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(new Error('aborted'));
    });
  });

/**
 * The test tools: echo, progress (notifications 200 ms apart), slow, and the ones the
 * @modelcontextprotocol/conformance server scenarios call (test_*).
 */
function createTestServer(): McpServer {
  const server = new McpServer({ name: 'test-backend', version: '1.0.0' }, { capabilities: { logging: {} } });
  const text = (value: string) => ({ content: [{ type: 'text' as const, text: value }] });

  server.registerTool('echo', { description: 'Echoes text', inputSchema: { text: z.string() } }, async ({ text: value }) => text(value));
  server.registerTool(
    'progress',
    { description: 'Emits progress notifications intervalMs apart', inputSchema: { steps: z.number().int().default(4), intervalMs: z.number().int().default(200) } },
    async ({ steps, intervalMs }, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (let i = 1; i <= steps; i++) {
        if (progressToken !== undefined) {
          await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress: i, total: steps } });
        }
        // Work after each step, the last one too: the SDK client drops progress that lands with the result.
        await sleep(intervalMs, extra.signal);
      }
      return text(`done after ${steps} steps`);
    },
  );
  server.registerTool('slow', { description: 'Answers after ms', inputSchema: { ms: z.number().int() } }, async ({ ms }, extra) => {
    await sleep(ms, extra.signal);
    return text('slow done');
  });

  server.registerTool('test_simple_text', { description: 'Simple text' }, async () => text('This is a simple text response for testing.'));
  server.registerTool('test_image_content', { description: 'Image' }, async () => ({
    content: [{ type: 'image' as const, data: PNG_1PX, mimeType: 'image/png' }],
  }));
  server.registerTool('test_audio_content', { description: 'Audio' }, async () => ({
    content: [{ type: 'audio' as const, data: WAV_EMPTY, mimeType: 'audio/wav' }],
  }));
  server.registerTool('test_embedded_resource', { description: 'Embedded resource' }, async () => ({
    content: [
      { type: 'resource' as const, resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } },
    ],
  }));
  server.registerTool('test_multiple_content_types', { description: 'Mixed content' }, async () => ({
    content: [
      { type: 'text' as const, text: 'Multiple content types test:' },
      { type: 'image' as const, data: PNG_1PX, mimeType: 'image/png' },
      { type: 'resource' as const, resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"test":"data","value":123}' } },
    ],
  }));
  server.registerTool('test_error_handling', { description: 'Always fails' }, async () => ({
    isError: true,
    content: [{ type: 'text' as const, text: 'This tool intentionally returns an error for testing' }],
  }));
  server.registerTool('test_tool_with_progress', { description: 'Progress 0/50/100' }, async (extra) => {
    const progressToken = extra._meta?.progressToken;
    for (const progress of [0, 50, 100]) {
      if (progressToken !== undefined) {
        await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress, total: 100 } });
      }
      if (progress < 100) await sleep(50);
    }
    return text('Progress test completed');
  });
  server.registerTool('test_tool_with_logging', { description: 'Logs three messages' }, async (extra) => {
    for (const data of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
      await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } });
      await sleep(50);
    }
    return text('Logging test completed');
  });
  return server;
}

/** MCP transports §Security Warning, as a backend bound to loopback should do it. */
function rebindingSafe(req: IncomingMessage): boolean {
  const loopback = (value: string) => ['localhost', '127.0.0.1', '[::1]'].includes(new URL(value).hostname);
  try {
    return loopback(`http://${req.headers.host}`) && (req.headers.origin === undefined || loopback(req.headers.origin));
  } catch {
    return false;
  }
}

/** An MCP backend on a loopback port: Streamable HTTP at /mcp, legacy SSE at /sse + /message. */
export async function startMcpBackend(): Promise<McpBackend> {
  const requests: SeenRequest[] = [];
  const aborts: SeenRequest[] = [];
  let abortWaiters: ((seen: SeenRequest) => void)[] = [];
  const streamable = new Map<string, StreamableHTTPServerTransport>();
  const legacy = new Map<string, SSEServerTransport>();
  const servers = new Set<McpServer>();

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://backend');
    const seen: SeenRequest = { method: req.method ?? '', path: url.pathname + url.search, headers: req.headers };
    requests.push(seen);
    res.on('close', () => {
      if (res.writableFinished) return;
      aborts.push(seen);
      for (const resolve of abortWaiters) resolve(seen);
      abortWaiters = [];
    });
    if (!rebindingSafe(req)) {
      res.writeHead(403, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","error":{"code":-32000,"message":"Forbidden"},"id":null}');
      return;
    }
    if (url.pathname === '/mcp') {
      const sessionId = req.headers['mcp-session-id'];
      if (typeof sessionId === 'string') {
        const transport = streamable.get(sessionId);
        if (!transport) {
          res.writeHead(404, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}');
          return;
        }
        await transport.handleRequest(req, res);
        return;
      }
      const body = req.method === 'POST' ? await readJson(req) : undefined;
      if (!isInitializeRequest(body)) {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"},"id":null}');
        return;
      }
      const server = createTestServer();
      servers.add(server);
      const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        onsessioninitialized: (id) => void streamable.set(id, transport),
      });
      transport.onclose = () => {
        if (transport.sessionId) streamable.delete(transport.sessionId);
      };
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
      return;
    }
    if (url.pathname === '/sse' && req.method === 'GET') {
      const server = createTestServer();
      servers.add(server);
      const transport = new SSEServerTransport('/message', res);
      legacy.set(transport.sessionId, transport);
      res.on('close', () => {
        legacy.delete(transport.sessionId);
        void server.close();
      });
      await server.connect(transport);
      return;
    }
    if (url.pathname === '/message' && req.method === 'POST') {
      const transport = legacy.get(url.searchParams.get('sessionId') ?? '');
      if (!transport) {
        res.writeHead(404).end('Session not found');
        return;
      }
      await transport.handlePostMessage(req, res);
      return;
    }
    res.writeHead(404).end();
  }

  const http = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(error));
      else res.end();
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return {
    url,
    mcpUrl: `${url}/mcp`,
    sseUrl: `${url}/sse`,
    requests,
    aborts,
    nextAbort: () => new Promise((resolve) => abortWaiters.push(resolve)),
    async close() {
      await Promise.allSettled([...servers].map((s) => s.close()));
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
    },
  };
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return undefined;
  }
}
