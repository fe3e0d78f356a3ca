import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type AuthInfo,
  createMcpHandler,
  isInitializeRequest,
  isLegacyRequest,
  type McpServer,
  type ServerNotifier,
  WebStandardStreamableHTTPServerTransport,
} from '@modelcontextprotocol/server';
// The v2 SDK has no HTTP+SSE (2024-11-05) server transport; v1's serves /sse + /message only.
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import pino, { type Logger } from 'pino';
import { type CallerIdentity, createIdentityVerifier, IdentityAssertionError } from './identity.ts';
import { sendWebResponse, webRequest } from './node-web.ts';
import { createSnippetsMcpServer, type SnippetsAuthExtra } from './server.ts';
import type { SnippetStorage } from './storage.ts';
import type { SnippetsTracing } from './telemetry.ts';

export const DEFAULT_SNIPPETS_PORT = 7071;
export const DEFAULT_KEY_HEADER = 'x-functions-key';
export const DEFAULT_IDENTITY_HEADER = 'x-mcp-identity';
/** Room for a 1 MiB snippet even with heavy JSON escaping. */
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface SnippetsHttpOptions {
  storage: SnippetStorage;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 7071 (the Azure Functions port); 0 picks a free port. */
  port?: number;
  /** The backend key every request must carry (like the reference's Azure Functions key). */
  functionKey?: string;
  /** Serve without a key; only when `functionKey` is absent and you mean it (local experiments). */
  allowNoKey?: boolean;
  /** Default `x-functions-key`. */
  keyHeader?: string;
  /** The gateway's JWKS; when set, every request must carry a valid identity assertion. */
  identityJwksUrl?: string;
  /** Required with identityJwksUrl: the `aud` the gateway puts in assertions for this backend. */
  identityAudience?: string;
  /** Checked against `iss` when set. */
  identityIssuer?: string;
  /** Default `x-mcp-identity`. */
  identityHeader?: string;
  /** Snippet content limit in UTF-8 bytes; default 1 MiB. */
  maxSnippetBytes?: number;
  /** Request body limit in bytes; default 4 MiB. */
  maxBodyBytes?: number;
  /** Default: pino at info level to stderr. */
  logger?: Logger;
  /** Streamable HTTP sessions unused this long are closed (default 30 min). */
  sessionIdleMs?: number;
  /** Open Streamable HTTP sessions per user (`sub`); one more initialize gets 429 (default 32). */
  maxSessionsPerUser?: number;
  /** Spans for MCP requests and storage calls (telemetry.ts), when telemetry is configured. */
  tracing?: SnippetsTracing;
}

export interface RunningSnippetsServer {
  /** Base URL, e.g. http://127.0.0.1:7071 */
  url: string;
  /** Streamable HTTP endpoint: `${url}/mcp`. */
  mcpUrl: string;
  /** Legacy HTTP+SSE endpoint: `${url}/sse` (messages go to `${url}/message?sessionId=…`). */
  sseUrl: string;
  /**
   * Publishes list changes to open 2026-07-28 `subscriptions/listen` streams (sessions of older
   * clients hear only changes their own server instance makes).
   */
  notify: ServerNotifier;
  close(): Promise<void>;
}

interface Session<T> {
  transport: T;
  server: McpServer;
  /** `sub` of the identity that opened the session; later requests must come from the same one. */
  sub: string | undefined;
  /** Date.now() of the last request in this session (Streamable HTTP idle expiry). */
  lastUsedAt?: number;
}

class HttpError extends Error {
  readonly status: number;
  readonly body: Record<string, unknown>;
  constructor(status: number, body: Record<string, unknown>) {
    super(String(body['error_description'] ?? body['error']));
    this.status = status;
    this.body = body;
  }
}

/** Starts the snippets MCP server over HTTP: Streamable HTTP at /mcp, legacy HTTP+SSE at /sse + /message. */
export async function startSnippetsServer(options: SnippetsHttpOptions): Promise<RunningSnippetsServer> {
  // Options are checked once, here, so a bad configuration fails at start.
  if (!options.functionKey && !options.allowNoKey) {
    throw new Error('functionKey is required (set allowNoKey to serve without one)');
  }
  if (options.identityJwksUrl && !options.identityAudience) {
    throw new Error('identityAudience is required when identityJwksUrl is set');
  }
  const logger = options.logger ?? pino({ name: 'snippets' }, pino.destination(2));
  const keyHeader = (options.keyHeader ?? DEFAULT_KEY_HEADER).toLowerCase();
  const identityHeader = (options.identityHeader ?? DEFAULT_IDENTITY_HEADER).toLowerCase();
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const keyDigest = options.functionKey ? sha256(options.functionKey) : undefined;
  const verifyIdentity = options.identityJwksUrl
    ? createIdentityVerifier({
        jwksUrl: options.identityJwksUrl,
        audience: options.identityAudience!,
        ...(options.identityIssuer ? { issuer: options.identityIssuer } : {}),
      })
    : undefined;
  const tracing = options.tracing;
  const storage = tracing ? tracing.storage(options.storage) : options.storage;
  const newMcpServer = () =>
    createSnippetsMcpServer({
      storage,
      logger,
      ...(options.maxSnippetBytes !== undefined ? { maxSnippetBytes: options.maxSnippetBytes } : {}),
    });

  // 2026-07-28: every request stands alone (no initialize, no session), served by a fresh server
  // instance; `subscriptions/listen` streams hear the handler's change events (MCP basic/transports).
  // Older clients are routed to the session-based Streamable HTTP below.
  const modern = createMcpHandler(newMcpServer, {
    legacy: 'reject',
    maxRequestBodySize: maxBodyBytes,
    onerror: (error) => logger.debug({ err: error }, 'MCP request refused'),
  });
  const streamable = new Map<string, Session<WebStandardStreamableHTTPServerTransport>>();
  const legacy = new Map<string, Session<SSEServerTransport>>();
  const sessionIdleMs = options.sessionIdleMs ?? 30 * 60_000;
  const maxSessionsPerUser = options.maxSessionsPerUser ?? 32;
  // Clients that never send DELETE would otherwise keep their sessions (and servers) forever.
  const idleSweep = setInterval(() => {
    const idleSince = Date.now() - sessionIdleMs;
    for (const session of streamable.values()) {
      if ((session.lastUsedAt ?? 0) < idleSince) void session.server.close();
    }
  }, Math.max(50, Math.min(60_000, Math.floor(sessionIdleMs / 2))));
  idleSweep.unref();

  /** Returns the SDK AuthInfo for this request (set as `req.auth`, read by tools as `extra.authInfo`). */
  async function authenticate(req: IncomingMessage): Promise<AuthInfo> {
    if (keyDigest) {
      const presented = req.headers[keyHeader];
      if (typeof presented !== 'string' || !timingSafeEqual(sha256(presented), keyDigest)) {
        throw new HttpError(401, { error: 'unauthorized', error_description: `Missing or invalid ${keyHeader} header` });
      }
    }
    let identity: CallerIdentity | undefined;
    let assertion = '';
    if (verifyIdentity) {
      const presented = req.headers[identityHeader];
      if (typeof presented !== 'string' || presented === '') {
        throw new HttpError(401, { error: 'invalid_identity', error_description: `Missing ${identityHeader} header` });
      }
      assertion = presented;
      try {
        identity = await verifyIdentity(assertion);
      } catch (error) {
        if (error instanceof IdentityAssertionError) {
          throw new HttpError(401, {
            error: 'invalid_identity',
            error_description: `Invalid ${identityHeader} assertion: ${error.message}`,
          });
        }
        logger.error({ err: error }, 'cannot verify identity assertions: gateway JWKS unavailable');
        throw new HttpError(503, { error: 'temporarily_unavailable', error_description: 'Cannot verify identity assertions right now' });
      }
    }
    const extra: SnippetsAuthExtra = identity ? { identity } : {};
    return { token: assertion, clientId: identity?.client_id ?? '', scopes: [], extra: { ...extra } };
  }

  async function handleStreamable(req: IncomingMessage & { auth?: AuthInfo }, res: ServerResponse, url: URL): Promise<void> {
    const sub = identitySub(req.auth);
    const sessionId = req.headers['mcp-session-id'];
    const auth = req.auth ? { authInfo: req.auth } : {};
    if (req.method === 'POST') {
      const body = await readJsonBody(req, maxBodyBytes);
      if (tracing) return tracing.serve(req, res, body, () => postStreamable(req, res, url, body));
      return postStreamable(req, res, url, body);
    }
    if (req.method === 'GET' || req.method === 'DELETE') {
      if (typeof sessionId !== 'string') throw jsonRpcError(400, -32000, 'Bad Request: Mcp-Session-Id header is required');
      const session = touch(sessionFor(streamable, sessionId, sub));
      if (req.method === 'GET') {
        // An open server stream is use: the session is not idle until it closes.
        session.lastUsedAt = Number.POSITIVE_INFINITY;
        res.on('close', () => touch(session));
      }
      await sendWebResponse(res, await session.transport.handleRequest(webRequest(req, res, url, undefined), auth));
      return;
    }
    throw new HttpError(405, { error: 'method_not_allowed', error_description: 'Use POST, GET or DELETE on /mcp' });
  }

  async function postStreamable(req: IncomingMessage & { auth?: AuthInfo }, res: ServerResponse, url: URL, body: unknown): Promise<void> {
    const sub = identitySub(req.auth);
    const sessionId = req.headers['mcp-session-id'];
    const auth = req.auth ? { authInfo: req.auth } : {};
    const request = webRequest(req, res, url, body);
    if (!(await isLegacyRequest(request, body, { maxRequestBodySize: maxBodyBytes }))) {
      await sendWebResponse(res, await modern.fetch(request, { ...auth, parsedBody: body }));
      return;
    }
    if (typeof sessionId === 'string') {
      const session = touch(sessionFor(streamable, sessionId, sub));
      await sendWebResponse(res, await session.transport.handleRequest(request, { ...auth, parsedBody: body }));
      return;
    }
    if (!isInitializeRequest(body)) {
      throw jsonRpcError(400, -32000, 'Bad Request: No valid session ID provided');
    }
    if ([...streamable.values()].filter((session) => session.sub === sub).length >= maxSessionsPerUser) {
      throw jsonRpcError(429, -32000, `Too Many Requests: at most ${maxSessionsPerUser} open sessions per user; end one with DELETE`);
    }
    const server = newMcpServer();
    const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: randomUUID,
      onsessioninitialized: (id) => {
        streamable.set(id, { transport, server, sub, lastUsedAt: Date.now() });
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) streamable.delete(transport.sessionId);
    };
    await server.connect(transport);
    await sendWebResponse(res, await transport.handleRequest(request, { ...auth, parsedBody: body }));
  }

  async function openLegacySse(req: IncomingMessage & { auth?: AuthInfo }, res: ServerResponse): Promise<void> {
    const server = newMcpServer();
    const transport = new SSEServerTransport('/message', res);
    legacy.set(transport.sessionId, { transport, server, sub: identitySub(req.auth) });
    res.on('close', () => {
      legacy.delete(transport.sessionId);
      void server.close();
    });
    await server.connect(transport);
  }

  async function postLegacyMessage(req: IncomingMessage & { auth?: AuthInfo }, res: ServerResponse, url: URL): Promise<void> {
    const sessionId = url.searchParams.get('sessionId');
    if (!sessionId) throw jsonRpcError(400, -32000, 'Bad Request: sessionId query parameter is required');
    const session = sessionFor(legacy, sessionId, identitySub(req.auth));
    const body = await readJsonBody(req, maxBodyBytes);
    await session.transport.handlePostMessage(req, res, body);
  }

  async function route(req: IncomingMessage & { auth?: AuthInfo }, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/healthz' && req.method === 'GET') {
      sendJson(res, 200, { status: 'ok' });
      return;
    }
    req.auth = await authenticate(req);
    if (url.pathname === '/mcp') return handleStreamable(req, res, url);
    if (url.pathname === '/sse' && req.method === 'GET') return openLegacySse(req, res);
    if (url.pathname === '/message' && req.method === 'POST') return postLegacyMessage(req, res, url);
    throw new HttpError(404, { error: 'not_found', error_description: `No route for ${req.method} ${url.pathname}` });
  }

  const httpServer = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      if (error instanceof HttpError) {
        if (error.status === 401) logger.warn({ path: req.url?.split('?')[0], reason: error.message }, 'refused request');
        if (!res.headersSent) sendJson(res, error.status, error.body);
        else res.end();
        return;
      }
      logger.error({ err: error }, 'request failed');
      if (!res.headersSent) sendJson(res, 500, { jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null });
      else res.end();
    });
  });

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.port ?? DEFAULT_SNIPPETS_PORT, options.host ?? '127.0.0.1', () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  const address = httpServer.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info(
    { url, keyHeader, key: keyDigest ? 'required' : 'none', identity: options.identityJwksUrl ?? 'none' },
    'snippets MCP server listening',
  );

  let closing: Promise<void> | undefined;
  return {
    url,
    mcpUrl: `${url}/mcp`,
    sseUrl: `${url}/sse`,
    notify: modern.notify,
    close() {
      clearInterval(idleSweep);
      closing ??= (async () => {
        const sessions = [...streamable.values(), ...legacy.values()];
        await Promise.allSettled([modern.close(), ...sessions.map((session) => session.server.close())]);
        await new Promise<void>((resolve) => {
          httpServer.close(() => resolve());
          httpServer.closeAllConnections();
        });
        logger.info('snippets MCP server stopped');
      })();
      return closing;
    },
  };
}

/** Unknown session, or one opened by someone else: 404, so clients start a new session (MCP transports spec). */
function sessionFor<T>(sessions: Map<string, Session<T>>, sessionId: string, sub: string | undefined): Session<T> {
  const session = sessions.get(sessionId);
  if (!session || session.sub !== sub) throw jsonRpcError(404, -32001, 'Session not found');
  return session;
}

function touch<T>(session: Session<T>): Session<T> {
  session.lastUsedAt = Date.now();
  return session;
}

function identitySub(auth: AuthInfo | undefined): string | undefined {
  return (auth?.extra as SnippetsAuthExtra | undefined)?.identity?.sub;
}

async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const contentType = req.headers['content-type'] ?? '';
  if (!/^application\/json\s*(;|$)/i.test(contentType)) {
    throw jsonRpcError(415, -32000, 'Unsupported Media Type: Content-Type must be application/json');
  }
  if (Number(req.headers['content-length']) > maxBytes) throw tooLarge(maxBytes);
  const chunks: Buffer[] = [];
  let received = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    received += chunk.byteLength;
    if (received > maxBytes) throw tooLarge(maxBytes);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw jsonRpcError(400, -32700, 'Parse error: request body is not valid JSON');
  }
}

function tooLarge(maxBytes: number): HttpError {
  return jsonRpcError(413, -32000, `Payload Too Large: request body must not exceed ${maxBytes} bytes`);
}

function jsonRpcError(status: number, code: number, message: string): HttpError {
  return new HttpError(status, { jsonrpc: '2.0', error: { code, message }, id: null });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
