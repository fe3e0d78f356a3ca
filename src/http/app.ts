import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { type Duplex, PassThrough, type Readable } from 'node:stream';
import Fastify, {
  LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { DEFAULT_TIMEOUTS, type TimeoutsConfig } from '../config/schema.ts';
import { OAuthError } from '../oauth/errors.ts';
import { PAGE_HEADERS, errorPage } from '../oauth/pages.ts';
import { sendJson } from '../proxy/respond.ts';
import { clientIpOf } from './client-ip.ts';
import { RawResponse, type ResponseObserver, watchRawResponse } from './raw-response.ts';
import { httpRouteResolved, serveTraced } from '../telemetry/http.ts';

/** OAuth endpoints take small bodies; MCP routes stream theirs and enforce each backend's maxBodyBytes. */
const OAUTH_BODY_LIMIT_BYTES = 64 * 1024;
/** How often node:http looks for requests past their header or request timeout (its default is 30 s). */
const MAX_TIMEOUT_CHECK_INTERVAL_MS = 1000;
/** RFC 6797 §6.1.1: one year, the gateway's own host only. */
const HSTS_VALUE = 'max-age=31536000';

export interface HttpAppOptions {
  trustProxy?: boolean | string[];
  /** Config `timeouts` (docs/security.md, Request timeouts). */
  timeouts?: TimeoutsConfig;
  /** RFC 6797: send Strict-Transport-Security (when publicUrl is https). */
  hsts?: boolean;
  /** When spans are exported: a SERVER span per request of a fastify route (raw routes trace themselves). */
  tracer?: Tracer;
}

/**
 * Fastify with the gateway's shared behaviour: strict form parsing, one error boundary, JSON 404s,
 * request timeouts and security headers on every response (raw routes included).
 * Route modules are registered on the returned app by gateway.ts; `raw` is handed to those that
 * serve raw node:http routes (the MCP endpoints); `observe` sets the one observer of every
 * response, fastify's and the raw routes' alike (metrics); `clientIp` is a raw request's client
 * address as fastify's `request.ip` would give it (trustProxy).
 */
export function createHttpApp(
  logger: Logger,
  options: HttpAppOptions = {},
): { app: FastifyInstance; raw: RawRoutes; observe(observer: ResponseObserver): void; clientIp: (req: IncomingMessage) => string } {
  const timeouts = options.timeouts ?? DEFAULT_TIMEOUTS;
  const raw = createRawRoutes();
  const tracer = options.tracer;
  // Set before any route writes its head; writeHead merges them in (fastify's replies and the raw routes' alike).
  const securityHeaders: [string, string][] = [['x-content-type-options', 'nosniff']];
  if (options.hsts) securityHeaders.push(['strict-transport-security', HSTS_VALUE]);
  const app = Fastify({
    // Requests for a raw route skip fastify (routing, hooks, request/reply objects): the MCP
    // Streamable HTTP endpoint, on every tool call (bench/README.md, benchmark 1).
    serverFactory: (handler) =>
      createServer(
        {
          // Raw routes: one shared close listener per answer (src/http/raw-response.ts).
          ServerResponse: RawResponse as typeof ServerResponse,
          headersTimeout: timeouts.headersMs,
          // Every request, whatever its route, within the longest body bound (a body left unread
          // after an early answer included); each route's own, shorter bound answers first.
          requestTimeout: timeouts.headersMs + Math.max(timeouts.oauthBodyMs, timeouts.mcpBodyMs),
          keepAliveTimeout: timeouts.keepAliveMs,
          connectionsCheckingInterval: Math.min(MAX_TIMEOUT_CHECK_INTERVAL_MS, Math.ceil(timeouts.headersMs / 4)),
          // No socket inactivity timeout (server.timeout stays 0): a backend may think for
          // backends[].headersTimeoutMs and SSE streams idle between keep-alive comments.
        },
        (req, res) => {
          for (let i = 0; i < securityHeaders.length; i++) res.setHeader(securityHeaders[i]![0], securityHeaders[i]![1]);
          if (raw.dispatch(req, res)) return;
          if (tracer === undefined) handler(req, res);
          else serveTraced(tracer, req, res, handler);
        },
      ),
    // node:http's 408 (headers or request too slow) and 400 (unparsable request), on the socket.
    clientErrorHandler: (error, socket) => answerClientError(error, socket, securityHeaders),
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: OAUTH_BODY_LIMIT_BYTES,
    trustProxy: options.trustProxy ?? false,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    routerOptions: { maxParamLength: 500, ignoreTrailingSlash: false },
  });

  // RFC 9110 §15.5.9: a body that does not arrive within oauthBodyMs of the request head gets 408.
  app.addHook('preParsing', (request, reply, payload, done) => {
    if (request.raw.complete || !hasBody(request.headers)) return done(null, payload);
    done(null, withDeadline(payload, timeouts.oauthBodyMs, reply.raw));
  });

  app.addHook('onRequest', (request, _reply, done) => {
    if (tracer !== undefined) httpRouteResolved(request.method, request.routeOptions.url ?? 'unmatched');
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    raw.observer?.(request.routeOptions.url ?? 'unmatched', request.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  // Fastify answers new requests with 503 once it is closing (return503OnClosing); so do raw routes.
  app.addHook('preClose', (done) => {
    raw.closing = true;
    done();
  });

  // RFC 6749 §3.1 / Appendix B: form bodies, each parameter at most once.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    const parsed: Record<string, string> = {};
    for (const [name, value] of new URLSearchParams(body as string)) {
      if (Object.hasOwn(parsed, name)) return done(new OAuthError('invalid_request', `parameter ${name} must appear once`));
      parsed[name] = value;
    }
    done(null, parsed);
  });

  app.setErrorHandler((error: FastifyError | OAuthError, request, reply) => {
    const oauth = toOAuthError(error);
    if (oauth.status >= 500) request.log.error({ err: error }, 'request failed');
    for (const [name, value] of Object.entries(oauth.headers)) reply.header(name, value);
    // A page's own error, or any error of a page request a browser made: HTML; else RFC 6749 JSON.
    if (oauth.page !== undefined || (request.method === 'GET' && request.headers.accept?.includes('text/html'))) {
      return reply.code(oauth.status).headers(PAGE_HEADERS).send(errorPage(oauth.page ?? 'Request failed', `${oauth.code}: ${oauth.description}`));
    }
    return reply.code(oauth.status).header('cache-control', 'no-store').send(oauth.toJSON());
  });

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({ error: 'not_found', error_description: `no route for ${request.method} ${request.url.split('?')[0]}` });
  });

  return {
    app,
    raw: raw.routes,
    // A raw route's client address, as fastify's request.ip (trustProxy) on its routes.
    clientIp: clientIpOf(options.trustProxy),
    observe(observer) {
      raw.observer = observer;
    },
  };
}

/** Whether a request has a body (RFC 9112 §6.3: framed by Transfer-Encoding or a non-zero Content-Length). */
function hasBody(headers: IncomingHttpHeaders): boolean {
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');
}

/**
 * The body, failing with 408 unless it ends within `ms`. One timer per body. Once answered (a body
 * refused unread: 413, 415), the rest is node:http's requestTimeout's to bound.
 */
function withDeadline(payload: Readable, ms: number, res: ServerResponse): Readable {
  const timed = new PassThrough();
  const timer = setTimeout(() => {
    payload.unpipe(timed);
    timed.destroy(
      // RFC 9110 §15.5.9: the server closes the connection rather than keep waiting.
      new OAuthError('invalid_request', `request body not received within ${ms} ms`, { status: 408, headers: { connection: 'close' } }),
    );
  }, ms);
  const clear = () => clearTimeout(timer);
  timed.once('end', clear);
  timed.once('close', clear);
  res.once('finish', clear);
  // Fastify's body reader listens while it reads; a refusal answered meanwhile must not crash the process.
  timed.on('error', () => {});
  return payload.pipe(timed);
}

/** Node's own refusals (fastify's default handler, with the security headers and Connection: close). */
function answerClientError(error: NodeJS.ErrnoException, socket: Duplex, headers: [string, string][]): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, reason, message] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'Request Timeout', 'request not received in time']
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large', 'request headers too large']
        : [400, 'Bad Request', 'malformed request'];
  const body = JSON.stringify({ error: 'invalid_request', error_description: message });
  if (socket.writable) {
    const lines = headers.map(([name, value]) => `${name}: ${value}\r\n`).join('');
    socket.write(
      `HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${lines}\r\n${body}`,
    );
  }
  socket.destroy();
}

export type RawHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** Routes served by a plain node:http handler instead of fastify (the app's other routes stay on fastify). */
export interface RawRoutes {
  /** Serves these methods on `path` (exact, query ignored); other methods stay with fastify. */
  add(path: string, methods: readonly string[], handler: RawHandler): void;
  /** True once the server began closing (raw routes then answer 503; handlers may check it too). */
  readonly closing: boolean;
}

function createRawRoutes() {
  const table = new Map<string, Map<string, RawHandler>>();
  const state = {
    closing: false,
    observer: undefined as ResponseObserver | undefined,
    routes: {
      add(path, methods, handler) {
        let byMethod = table.get(path);
        if (!byMethod) {
          byMethod = new Map();
          table.set(path, byMethod);
        }
        for (const method of methods) byMethod.set(method, handler);
      },
      get closing(): boolean {
        return state.closing;
      },
    } satisfies RawRoutes,
    /** True when a raw route took the request. */
    dispatch(req: IncomingMessage, res: ServerResponse): boolean {
      const url = req.url ?? '/';
      const query = url.indexOf('?');
      const path = query < 0 ? url : url.slice(0, query);
      const handler = table.get(path)?.get(req.method ?? '');
      if (handler === undefined) return false;
      if (state.closing) {
        // Fastify's own answer while closing (lib/route.js, return503OnClosing).
        sendJson(res, 503, { error: 'Service Unavailable', message: 'Service Unavailable', statusCode: 503 }, { connection: 'close' });
        return true;
      }
      // The server's responses are RawResponses (createServer's ServerResponse option).
      watchRawResponse(res as RawResponse, path, state.observer);
      handler(req, res);
      return true;
    },
  };
  return state;
}

/** The one error boundary: our errors pass through, framework 4xx are named, anything else is server_error. */
function toOAuthError(error: unknown): OAuthError {
  if (error instanceof OAuthError) return error;
  const status = (error as FastifyError).statusCode;
  const code = (error as FastifyError).code;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE' || status === 413) {
    return new OAuthError('invalid_request', 'request body is too large', { status: 413 });
  }
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || status === 415) {
    return new OAuthError('invalid_request', 'unsupported content type', { status: 415 });
  }
  if (code === 'FST_ERR_CTP_INVALID_JSON_BODY' || code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
    return new OAuthError('invalid_request', 'request body is not valid JSON');
  }
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new OAuthError('invalid_request', (error as Error).message, { status });
  }
  if ((error as Error)?.name === 'StoreUnavailableError' || (error as Error)?.name === 'UpstreamUnavailableError') {
    return new OAuthError('temporarily_unavailable', 'a service the gateway depends on is unreachable; try again later', {
      headers: { 'retry-after': '2' },
    });
  }
  return new OAuthError('server_error', 'internal error');
}
