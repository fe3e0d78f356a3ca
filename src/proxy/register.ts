import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Audit } from '../audit/audit.ts';
import { DEFAULT_TIMEOUTS, type PolicyQuotaConfig, type PolicyRuleConfig } from '../config/schema.ts';
import type { RawRoutes } from '../http/app.ts';
import type { ProtectedResource } from '../oauth/resources.ts';
import { type ClientFacts, createEnforcer, type Enforcer } from '../policy/enforce.ts';
import type { Clock } from '../ports/clock.ts';
import type { AccessTokenRecord } from '../ports/records.ts';
import type { Store } from '../ports/store.ts';
import type { ProxyContext } from './exchange.ts';
import type { ValidateAccessToken } from './bearer.ts';
import type { DownstreamTokens } from '../oauth/downstream-tokens.ts';
import { createDownstreamPush, type DownstreamPush } from './downstream-push.ts';
import { createForwarder } from './forward.ts';
import { createGate, type Gate } from './gate.ts';
import { createIdentityAssertions } from './identity-assertion.ts';
import { registerLegacySse } from './legacy-sse.ts';
import { createKeepAlive } from './relay.ts';
import type { ProxyTelemetry } from './telemetry-hook.ts';
import { createGatewayMetrics } from '../telemetry/metrics.ts';
import { localTelemetry } from '../telemetry/sdk.ts';
import { createSessionBinding, type SessionBinding } from './session-binding.ts';
import { registerStreamableHttp } from './streamable-http.ts';

/** Idle SSE streams get a comment this often so intermediaries do not cut them. */
const SSE_KEEP_ALIVE_INTERVAL_MS = 15_000;

export interface ProxyOptions {
  /** Default SSE_KEEP_ALIVE_INTERVAL_MS; tests shorten it. */
  keepAliveIntervalMs?: number;
}

export interface ProxyDeps {
  resources: ProtectedResource[];
  /** The app's raw node:http routes (createHttpApp), where the MCP endpoints are served. */
  routes: RawRoutes;
  validateAccessToken: ValidateAccessToken;
  store: Store;
  clock: Clock;
  logger: Logger;
  /** The client's address, trustProxy honoured (createHttpApp's clientIp); default: the socket's. */
  clientIp?: (req: IncomingMessage) => string;
  /** The gateway's public base URL: assertion issuer, legacy message URLs, same-origin requests. */
  publicUrl: string;
  /** Origins allowed besides the gateway's own (config `allowedOrigins`). */
  allowedOrigins: readonly string[];
  /** `listen.host`; on loopback, foreign Host headers are refused (DNS rebinding). */
  listenHost: string;
  /** PKCS#8 PEM of the P-256 key that signs identity assertions. */
  signingKeyPem: string;
  /** How long a replica trusts a session binding it read (`tokens.cacheMs`, default 1000). */
  cacheMs?: number;
  /** Config `timeouts.mcpBodyMs` (default DEFAULT_TIMEOUTS.mcpBodyMs). */
  bodyTimeoutMs?: number;
  /** Config `policy.rules`: judged for every backend, before its own. */
  globalPolicyRules?: readonly PolicyRuleConfig[];
  /** Config `policy.quotas`: counted for every backend (one count across them), before its own. */
  globalPolicyQuotas?: readonly PolicyQuotaConfig[];
  /** A client's name and how it registered, for conditions that read `client.name` / `client.kind`. */
  describeClient?: (clientId: string) => Promise<ClientFacts>;
  /** One record per MCP operation (src/proxy/audit-hook.ts) when enabled. */
  audit?: Audit;
  /** The gateway's instruments and tracer (default: metrics nobody reads, no spans). */
  telemetry?: ProxyTelemetry;
  /** Entra: the groups of a user with a groups overage, from Microsoft Graph (src/oauth/graph-groups.ts). */
  overageGroups?: (record: AccessTokenRecord) => Promise<string[] | undefined>;
  /** Mints backends' downstream tokens (undefined when the upstream IdP cannot). */
  downstreamTokens?: DownstreamTokens;
}

/**
 * Mounts every backend's MCP endpoints (Streamable HTTP at `<path>`, legacy HTTP+SSE at
 * `<path>/sse` + `<path>/message`) and `/.well-known/jwks.json`. The MCP routes are raw node:http
 * routes (src/http/app.ts rawRoutes: no fastify objects per call, bodies streamed, per-backend size
 * limits, JSON-RPC error bodies); their CORS preflights and the JWKS are fastify routes.
 */
export async function registerMcpProxy(app: FastifyInstance, deps: ProxyDeps, options: ProxyOptions = {}): Promise<{ close(): Promise<void> }> {
  const keepAliveMs = options.keepAliveIntervalMs ?? SSE_KEEP_ALIVE_INTERVAL_MS;
  if (!(keepAliveMs > 0)) throw new Error('keepAliveIntervalMs must be positive');
  for (const resource of deps.resources) {
    if (resource.scopes.length === 0) throw new Error(`backends.${resource.name}.scopes: at least one scope is required`);
  }
  const issuer = new URL(deps.publicUrl).origin;
  const assertions = await createIdentityAssertions({ signingKeyPem: deps.signingKeyPem, issuer, clock: deps.clock });
  const enforcers = new Map<string, Enforcer>();
  for (const resource of deps.resources) {
    const rules = [...(deps.globalPolicyRules ?? []), ...(resource.backend.policy?.rules ?? [])];
    // A global quota's counts are shared by every backend (scope `*`); a backend's are its own.
    const quotas = [
      ...(deps.globalPolicyQuotas ?? []).map((quota) => ({ scope: '*', quota })),
      ...(resource.backend.policy?.quotas ?? []).map((quota) => ({ scope: resource.name, quota })),
    ];
    const enforcer = createEnforcer(rules, {
      backend: resource.name,
      clock: deps.clock,
      describeClient: deps.describeClient,
      quotas,
      store: deps.store,
      audit: deps.audit?.enabled ? deps.audit : undefined,
      overageGroups: deps.overageGroups,
      clientIp: deps.clientIp,
    });
    if (enforcer) enforcers.set(resource.name, enforcer);
  }
  const downstream = new Map<string, DownstreamPush>();
  for (const resource of deps.resources) {
    const push = createDownstreamPush(deps.downstreamTokens, resource.backend);
    if (push) downstream.set(resource.name, push);
  }
  const forwarders = new Map(deps.resources.map((r) => [r.name, createForwarder(r.backend)]));
  // One context object shared by every route.
  const ctx: ProxyContext & { gate: Gate; sessions: SessionBinding; store: Store; publicUrl: string } = {
    forwarders,
    assertions,
    keepAlive: createKeepAlive(keepAliveMs),
    bodyTimeoutMs: deps.bodyTimeoutMs ?? DEFAULT_TIMEOUTS.mcpBodyMs,
    logger: deps.logger,
    active: new Set(),
    enforcers,
    routes: deps.routes,
    audit: deps.audit?.enabled ? deps.audit : undefined,
    clientIp: deps.clientIp ?? ((req) => req.socket.remoteAddress),
    telemetry: deps.telemetry ?? { metrics: createGatewayMetrics(localTelemetry().meterProvider), tracer: undefined },
    downstream,
    gate: createGate({ ...deps, publicUrl: issuer }),
    sessions: createSessionBinding(deps.store, deps.clock, { cacheMs: deps.cacheMs }),
    store: deps.store,
    publicUrl: issuer,
  };

  // RFC 7517 §5: the public key backends verify identity assertions with.
  app.get('/.well-known/jwks.json', (_request, reply) => {
    reply.header('cache-control', 'public, max-age=300').send(assertions.jwks);
  });

  // Graceful shutdown: open long-lived SSE streams (GET, 2026-07-28 subscriptions/listen) would
  // hold the server open, so they are ended (cleanly, via their backend exchange); other requests
  // in flight (POST, DELETE) finish within the grace period.
  ctx.telemetry.metrics.observeActiveStreams(() => ctx.active.size);
  app.addHook('preClose', (done) => {
    for (const abort of ctx.active) abort();
    done();
  });

  // The MCP routes are raw node:http routes (src/http/app.ts); only their CORS preflights are fastify's.
  for (const resource of deps.resources) {
    if (resource.backend.url) registerStreamableHttp(app, ctx, resource);
    if (resource.backend.sseUrl) registerLegacySse(app, ctx, resource);
  }

  return {
    async close() {
      ctx.keepAlive.close();
      await Promise.allSettled([...forwarders.values()].map((f) => f.close()));
    },
  };
}
