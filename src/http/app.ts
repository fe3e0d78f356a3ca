import Fastify, {
  LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { OAuthError } from '../oauth/errors.ts';
import { PAGE_HEADERS, errorPage } from '../oauth/pages.ts';

/** OAuth endpoints take small bodies; MCP routes set their own, larger limit. */
export const OAUTH_BODY_LIMIT_BYTES = 64 * 1024;

/**
 * Fastify with the gateway's shared behaviour: strict form parsing, one error boundary, JSON 404s.
 * Route modules are registered on the returned instance by main.ts.
 */
export function createHttpApp(logger: Logger, options: { trustProxy?: boolean | string[] } = {}): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: OAUTH_BODY_LIMIT_BYTES,
    trustProxy: options.trustProxy ?? false,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    routerOptions: { maxParamLength: 500, ignoreTrailingSlash: false },
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
    if (request.method === 'GET' && request.headers.accept?.includes('text/html')) {
      return reply.code(oauth.status).headers(PAGE_HEADERS).send(errorPage('Request failed', `${oauth.code}: ${oauth.description}`));
    }
    return reply.code(oauth.status).header('cache-control', 'no-store').send(oauth.toJSON());
  });

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({ error: 'not_found', error_description: `no route for ${request.method} ${request.url.split('?')[0]}` });
  });

  return app;
}

/** The one error boundary: our errors pass through, framework 4xx are named, anything else is server_error. */
export function toOAuthError(error: unknown): OAuthError {
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
