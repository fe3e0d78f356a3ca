import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type CallToolResult,
  completable,
  createMcpHandler,
  createRequestStateCodec,
  hostHeaderValidationResponse,
  InMemoryServerEventBus,
  isInitializeRequest,
  isLegacyRequest,
  localhostAllowedHostnames,
  localhostAllowedOrigins,
  McpServer,
  originValidationResponse,
  type RequestStateCodec,
  ResourceTemplate,
  type ServerContext,
  WebStandardStreamableHTTPServerTransport,
} from '@modelcontextprotocol/server';
import { z } from 'zod';
import { sendWebResponse, webRequest } from '../../servers/snippets/node-web.ts';
import { type FixtureRequestState, registerInputTools } from './conformance-input-tools.ts';

export interface ConformanceFixture {
  /** The MCP endpoint: 2026-07-28 statelessly, older revisions with a session. */
  mcpUrl: string;
  close(): Promise<void>;
}

const PNG_1PX = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV_EMPTY = 'UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (value: string): CallToolResult => ({ content: [{ type: 'text', text: value }] });

/**
 * The tools, resources and prompts the `@modelcontextprotocol/conformance` server scenarios call
 * (their `test_*` and `test://` names), on the v2 server SDK. `codec` seals and verifies the
 * multi-round-trip `requestState` (spec basic/patterns/mrtr: integrity-protect, reject tampering);
 * `bus` carries list changes to the 2026-07-28 `subscriptions/listen` streams.
 */
function createFixtureServer(codec: RequestStateCodec<FixtureRequestState>, bus: InMemoryServerEventBus): McpServer {
  const server = new McpServer(
    { name: 'conformance-fixture', version: '1.0.0' },
    {
      capabilities: { logging: {}, completions: {}, resources: { subscribe: true, listChanged: true }, prompts: { listChanged: true } },
      requestState: { verify: codec.verify },
    },
  );
  registerInputTools(server, codec);
  // The hooks the server-stateless scenario calls to see list changes on an open listen stream.
  server.registerTool('test_trigger_tool_change', { description: 'Announces a tool list change' }, () => {
    bus.publish({ kind: 'tools_list_changed' });
    return text('Mutation triggered');
  });
  server.registerTool('test_trigger_prompt_change', { description: 'Announces a prompt list change' }, () => {
    bus.publish({ kind: 'prompts_list_changed' });
    return text('Mutation triggered');
  });

  server.registerTool('test_simple_text', { description: 'Simple text content' }, () => text('This is a simple text response for testing.'));
  server.registerTool('test_image_content', { description: 'Image content' }, () => ({
    content: [{ type: 'image', data: PNG_1PX, mimeType: 'image/png' }],
  }));
  server.registerTool('test_audio_content', { description: 'Audio content' }, () => ({
    content: [{ type: 'audio', data: WAV_EMPTY, mimeType: 'audio/wav' }],
  }));
  server.registerTool('test_embedded_resource', { description: 'Embedded resource content' }, () => ({
    content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }],
  }));
  server.registerTool('test_multiple_content_types', { description: 'Text, image and resource content' }, () => ({
    content: [
      { type: 'text', text: 'Multiple content types test:' },
      { type: 'image', data: PNG_1PX, mimeType: 'image/png' },
      { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"test":"data","value":123}' } },
    ],
  }));
  server.registerTool('test_error_handling', { description: 'Always fails' }, () => {
    throw new Error('This tool intentionally returns an error for testing');
  });
  server.registerTool('test_tool_with_logging', { description: 'Logs three messages while it runs' }, async (ctx: ServerContext) => {
    for (const data of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
      await ctx.mcpReq.notify({ method: 'notifications/message', params: { level: 'info', data } });
      await sleep(50);
    }
    return text('Tool with logging executed successfully');
  });
  server.registerTool('test_tool_with_progress', { description: 'Reports progress 0, 50, 100' }, async (ctx: ServerContext) => {
    const progressToken = ctx.mcpReq._meta?.progressToken ?? 0;
    for (const progress of [0, 50, 100]) {
      await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` } });
      await sleep(50);
    }
    return text(String(progressToken));
  });

  server.registerResource('static-text', 'test://static-text', { mimeType: 'text/plain', description: 'Static text' }, (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }],
  }));
  server.registerResource('static-binary', 'test://static-binary', { mimeType: 'image/png', description: 'Static binary' }, (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG_1PX }],
  }));
  server.registerResource('watched-resource', 'test://watched-resource', { mimeType: 'text/plain' }, (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'Watched resource content' }],
  }));
  server.registerResource(
    'template',
    new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { mimeType: 'application/json', description: 'Data by id' },
    (uri, { id }) => ({
      contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }],
    }),
  );

  // resources/subscribe and /unsubscribe exist up to 2025-11-25 (2026-07-28 replaced them with
  // subscriptions/listen, which the SDK serves); the scenarios only check the empty result.
  const subscribed = new Set<string>();
  server.server.setRequestHandler('resources/subscribe', (request) => {
    subscribed.add(request.params.uri);
    return {};
  });
  server.server.setRequestHandler('resources/unsubscribe', (request) => {
    subscribed.delete(request.params.uri);
    return {};
  });

  server.registerPrompt('test_simple_prompt', { description: 'A prompt without arguments' }, () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
  }));
  server.registerPrompt(
    'test_prompt_with_arguments',
    {
      description: 'A prompt with arguments',
      argsSchema: z.object({
        arg1: completable(z.string().describe('First test argument'), (value) => ['paris', 'park', 'party'].filter((item) => item.startsWith(value))),
        arg2: z.string().describe('Second test argument'),
      }),
    },
    ({ arg1, arg2 }) => ({
      messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }],
    }),
  );
  server.registerPrompt(
    'test_prompt_with_embedded_resource',
    { description: 'A prompt with an embedded resource', argsSchema: z.object({ resourceUri: z.string().describe('URI of the resource') }) },
    ({ resourceUri }) => ({
      messages: [
        { role: 'user', content: { type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } } },
        { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
      ],
    }),
  );
  server.registerPrompt('test_prompt_with_image', { description: 'A prompt with an image' }, () => ({
    messages: [
      { role: 'user', content: { type: 'image', data: PNG_1PX, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
    ],
  }));
  return server;
}

/**
 * Starts the fixture on a loopback port: 2026-07-28 requests go to the SDK's stateless handler,
 * older ones to a session per `initialize` (the composition `isLegacyRequest` documents). Host
 * and Origin are checked as the MCP transports spec asks of local servers (DNS rebinding).
 */
export async function startConformanceFixture(): Promise<ConformanceFixture> {
  const codec = createRequestStateCodec<FixtureRequestState>({ key: randomBytes(32) });
  const bus = new InMemoryServerEventBus();
  const modern = createMcpHandler(() => createFixtureServer(codec, bus), { legacy: 'reject', bus });
  const sessions = new Map<string, WebStandardStreamableHTTPServerTransport>();

  async function legacy(request: Request, body: unknown): Promise<Response> {
    const sessionId = request.headers.get('mcp-session-id');
    if (sessionId) {
      const transport = sessions.get(sessionId);
      if (!transport) return Response.json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }, { status: 404 });
      return transport.handleRequest(request, { parsedBody: body });
    }
    if (!isInitializeRequest(body)) {
      return Response.json({ jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: No valid session ID provided' }, id: null }, { status: 400 });
    }
    const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: randomUUID,
      onsessioninitialized: (id) => {
        sessions.set(id, transport);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await createFixtureServer(codec, bus).connect(transport);
    return transport.handleRequest(request, { parsedBody: body });
  }

  async function readBody(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    const raw = Buffer.concat(chunks).toString('utf8');
    try {
      return raw === '' ? undefined : JSON.parse(raw);
    } catch {
      return raw;
    }
  }

  const httpServer = createServer((req, res) => {
    (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const body = req.method === 'POST' ? await readBody(req) : undefined;
      const request = webRequest(req, res, url, body);
      const refused = hostHeaderValidationResponse(request, localhostAllowedHostnames()) ?? originValidationResponse(request, localhostAllowedOrigins());
      if (refused) return sendWebResponse(res, refused);
      if (url.pathname !== '/mcp') return sendWebResponse(res, new Response('Not Found', { status: 404 }));
      const response = (await isLegacyRequest(request, body)) ? await legacy(request, body) : await modern.fetch(request, { parsedBody: body });
      return sendWebResponse(res, response);
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  const { port } = httpServer.address() as AddressInfo;
  return {
    mcpUrl: `http://127.0.0.1:${port}/mcp`,
    async close() {
      await Promise.allSettled([modern.close(), ...[...sessions.values()].map((transport) => transport.close())]);
      await new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      });
    },
  };
}
