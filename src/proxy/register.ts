import type { FastifyError, FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { ProtectedResource } from '../oauth/resources.ts';
import type { Clock } from '../ports/clock.ts';
import type { AccessTokenRecord } from '../ports/records.ts';
import { type Store, StoreUnavailableError } from '../ports/store.ts';
import type { ProxyContext } from './exchange.ts';
import { createForwarder, type Forwarder, GatewayError } from './forward.ts';
import { createGate } from './gate.ts';
import { createIdentityAssertions } from './identity-assertion.ts';
import { JSONRPC_SERVER_ERROR, jsonRpcError } from './jsonrpc.ts';
import { registerLegacySse } from './legacy-sse.ts';
import { createSessionBinding } from './session-binding.ts';
import { registerStreamableHttp } from './streamable-http.ts';

/** Retry-After on 503 answers while the store is unreachable (Redis reconnects within 2 s). */
const STORE_RETRY_AFTER_SECONDS = 2;

/** Idle SSE streams get a comment this often so intermediaries do not cut them. */
export const SSE_KEEP_ALIVE_INTERVAL_MS = 15_000;

export interface ProxyOptions {
  /** Default SSE_KEEP_ALIVE_INTERVAL_MS; tests shorten it. */
  keepAliveIntervalMs?: number;
}

export interface ProxyDeps {
  resources: ProtectedResource[];
  validateAccessToken: (token: string) => Promise<AccessTokenRecord | undefined>;
  store: Store;
  clock: Clock;
  logger: Logger;
  /** The gateway's public base URL: assertion issuer, legacy message URLs, same-origin requests. */
  publicUrl: string;
  /** Origins allowed besides the gateway's own (config `allowedOrigins`). */
  allowedOrigins: readonly string[];
  /** `listen.host`; on loopback, foreign Host headers are refused (DNS rebinding). */
  listenHost: string;
  /** PKCS#8 PEM of the P-256 key that signs identity assertions. */
  signingKeyPem: string;
}

/**
 * Mounts every backend's MCP endpoints (Streamable HTTP at `<path>`, legacy HTTP+SSE at
 * `<path>/sse` + `<path>/message`) and `/.well-known/jwks.json`. The MCP routes live in their own
 * scope: raw (streamed) bodies, per-backend size limits, JSON-RPC error bodies.
 */
export async function registerMcpProxy(app: FastifyInstance, deps: ProxyDeps, options: ProxyOptions = {}): Promise<{ close(): Promise<void> }> {
  const keepAliveMs = options.keepAliveIntervalMs ?? SSE_KEEP_ALIVE_INTERVAL_MS;
  if (!(keepAliveMs > 0)) throw new Error('keepAliveIntervalMs must be positive');
  for (const resource of deps.resources) {
    if (resource.scopes.length === 0) throw new Error(`backends.${resource.name}.scopes: at least one scope is required`);
  }
  const issuer = new URL(deps.publicUrl).origin;
  const assertions = await createIdentityAssertions({ signingKeyPem: deps.signingKeyPem, issuer, clock: deps.clock });
  let closing = false;
  const forwarders = new Map(deps.resources.map((r) => [r.name, refuseStreamsWhenClosing(createForwarder(r.backend), () => closing)]));
  const ctx: ProxyContext = { forwarders, assertions, keepAliveMs, logger: deps.logger, active: new Set() };
  const gate = createGate({ ...deps, publicUrl: issuer });
  const sessions = createSessionBinding(deps.store);

  // RFC 7517 §5: the public key backends verify identity assertions with.
  app.get('/.well-known/jwks.json', (_request, reply) => {
    reply.header('cache-control', 'public, max-age=300').send(assertions.jwks);
  });

  // Graceful shutdown: open SSE streams (GET) would hold the server open, so they are ended
  // (cleanly, via their backend exchange); requests in flight (POST, DELETE) finish within the grace period.
  app.addHook('preClose', (done) => {
    closing = true;
    for (const controller of ctx.active) controller.abort();
    done();
  });

  app.register(async (scope) => {
    // Bodies pass through as streams; each route enforces its backend's maxBodyBytes itself.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    scope.setErrorHandler((error: FastifyError, request, reply) => {
      if (error instanceof StoreUnavailableError) {
        // Issue 5: a store outage is the gateway's own failure, answered quickly as a JSON-RPC
        // error with 503 (RFC 9110 §15.6.4) and Retry-After; clients retry, nothing is lost.
        request.log.warn({ err: error }, 'MCP request refused: store unavailable');
        if (reply.sent || reply.raw.headersSent) return;
        return reply
          .code(503)
          .headers({ 'retry-after': String(STORE_RETRY_AFTER_SECONDS), 'cache-control': 'no-store' })
          .send(jsonRpcError(JSONRPC_SERVER_ERROR, 'Service Unavailable: the gateway cannot reach its store; try again later'));
      }
      const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
      if (status === 500) request.log.error({ err: error }, 'MCP request failed');
      if (reply.sent || reply.raw.headersSent) return;
      reply.code(status).send(jsonRpcError(JSONRPC_SERVER_ERROR, status === 500 ? 'Internal error' : error.message));
    });
    for (const resource of deps.resources) {
      if (resource.backend.url) registerStreamableHttp(scope, { ...ctx, gate, sessions }, resource);
      if (resource.backend.sseUrl) registerLegacySse(scope, { ...ctx, gate, store: deps.store, publicUrl: issuer }, resource);
    }
  });

  return {
    async close() {
      await Promise.allSettled([...forwarders.values()].map((f) => f.close()));
    },
  };
}

/**
 * A GET admitted just before shutdown began reaches its backend after the streams were ended:
 * refused (503) instead, so no new stream holds the server open.
 */
function refuseStreamsWhenClosing(forwarder: Forwarder, closing: () => boolean): Forwarder {
  return {
    request(request) {
      if (closing() && request.method === 'GET') {
        return Promise.reject(new GatewayError(503, 'Service Unavailable: the gateway is shutting down'));
      }
      return forwarder.request(request);
    },
    close: () => forwarder.close(),
  };
}
