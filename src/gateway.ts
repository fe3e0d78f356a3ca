import { randomBytes } from 'node:crypto';
import pino, { type Logger } from 'pino';
import { createAudit } from './audit/audit.ts';
import type { AuditSink } from './audit/sinks.ts';
import type { Config } from './config/load.ts';
import { tlsTrustOptions } from './config/tls.ts';
import { createHttpApp } from './http/app.ts';
import { allowAnyOrigin } from './http/cors.ts';
import { registerLanding } from './http/landing.ts';
import { registerHealth } from './http/health.ts';
import { type DevIdp, startDevIdp } from './idp/dev-idp.ts';
import { createUpstreamIdp } from './idp/index.ts';
import { registerAccount } from './oauth/account.ts';
import { registerAuthorize } from './oauth/authorize.ts';
import { registerCallback } from './oauth/callback.ts';
import { createClients } from './oauth/clients.ts';
import { createConfiguredClients } from './oauth/configured-clients.ts';
import { registerConsent } from './oauth/consent.ts';
import type { AuthServerContext } from './oauth/context.ts';
import { registerDownstreamConsent } from './oauth/downstream-consent.ts';
import { createDownstreamTokens } from './oauth/downstream-tokens.ts';
import { createGrants } from './oauth/grants.ts';
import { registerMetadata } from './oauth/metadata.ts';
import { registerRegistration } from './oauth/register.ts';
import { buildResources } from './oauth/resources.ts';
import { registerRevoke } from './oauth/revoke.ts';
import { createEntraGraphGroups } from './oauth/graph-groups.ts';
import { createSafeFetch } from './oauth/safe-fetch.ts';
import { createSealer, createSigner } from './oauth/secrets.ts';
import { registerToken } from './oauth/token.ts';
import { type Clock, systemClock } from './ports/clock.ts';
import type { Store } from './ports/store.ts';
import { registerMcpProxy } from './proxy/register.ts';
import { type RedisCredential, RedisStore } from './store/redis.ts';
import { entraRedisCredential } from './store/redis-entra.ts';
import { SqliteStore } from './store/sqlite.ts';
import { createGatewayMetrics } from './telemetry/metrics.ts';
import { instrumentStore, type StoreDatabase, traceIdp, traceStore } from './telemetry/ports.ts';
import { localTelemetry, type Telemetry } from './telemetry/sdk.ts';

export interface GatewayDeps {
  env: Record<string, string | undefined>;
  clock?: Clock;
  logger?: Logger;
  /** Replaces the configured store (tests). */
  store?: Store;
  /** Replaces the configured audit sink (tests: a sink that hangs). */
  auditSink?: AuditSink;
  /** Entra federated credential source override (tests). */
  getFederatedAssertion?: () => Promise<string>;
  /** Replaces the Entra token source of `store.entraAuth` (tests). */
  getRedisCredential?: () => Promise<RedisCredential>;
  /** The process's telemetry SDK (main.ts starts it); default: metrics for /metrics only, no spans. */
  telemetry?: Telemetry;
}

export interface RunningGateway {
  /** Base URL actually listened on (differs from publicUrl when port 0 was asked). */
  url: string;
  /** Base URL of the admin listener (/metrics, /readyz). */
  adminUrl: string;
  ctx: AuthServerContext;
  devIdp?: DevIdp;
  close(): Promise<void>;
}

/** While draining on shutdown, keep-alive connections that went idle are closed this often. */
const IDLE_CLOSE_INTERVAL_MS = 100;

/**
 * Builds every part from a validated Config and listens. The only place concrete adapters are
 * chosen. A start that fails part-way releases what it had started (listeners, the dev IdP, the
 * audit sink, the Store and telemetry it opened itself), latest first, before the error propagates.
 */
export async function startGateway(config: Config, deps: GatewayDeps): Promise<RunningGateway> {
  const started: (() => Promise<void>)[] = [];
  try {
    return await start(config, deps, started);
  } catch (error) {
    for (const release of started.reverse()) await release().catch(() => {});
    throw error;
  }
}

async function start(config: Config, deps: GatewayDeps, started: (() => Promise<void>)[]): Promise<RunningGateway> {
  const clock = deps.clock ?? systemClock;
  const logger =
    deps.logger ??
    pino({
      level: config.logLevel,
      redact: ['req.headers.authorization', 'req.headers.cookie', '*.client_secret', '*.refresh_token', '*.access_token'],
    });
  const issuer = new URL(config.publicUrl).origin;
  const redirectUri = `${issuer}/callback`;
  const telemetry = deps.telemetry ?? localTelemetry();
  if (!deps.telemetry) started.push(() => telemetry.shutdown());
  const metrics = createGatewayMetrics(telemetry.meterProvider);
  const tracer = telemetry.tracer;
  const opened = deps.store ?? (await openStore(config, clock, deps.getRedisCredential));
  if (!deps.store) started.push(() => opened.close());
  const measuredStore = instrumentStore(opened, metrics);
  const store = tracer ? traceStore(measuredStore, tracer, storeDatabase(config.store)) : measuredStore;

  let devIdp: DevIdp | undefined;
  let devClient: { clientId: string; clientSecret: string; redirectUris: string[] } | undefined;
  if (config.upstream.dev) {
    devClient = { clientId: 'mcp-entra-gateway', clientSecret: randomBytes(32).toString('base64url'), redirectUris: [redirectUri] };
    const idp = await startDevIdp(config.upstream.dev, devClient, { env: deps.env, store, clock });
    started.push(() => idp.close());
    devIdp = idp;
  }
  const upstreamIdp = await createUpstreamIdp(config.upstream, {
    redirectUri,
    devIdp: devIdp && devClient && { issuer: devIdp.issuer, clientId: devClient.clientId, clientSecret: devClient.clientSecret },
    allowInsecureHttp: config.mode === 'dev',
    getFederatedAssertion: deps.getFederatedAssertion,
    logger: logger.child({ component: 'upstream' }),
    clock,
  });
  const idp = tracer ? traceIdp(upstreamIdp, tracer) : upstreamIdp;

  const sealer = createSealer(config.secrets.encryptionKeys.map((k) => ({ id: k.id, key: Buffer.from(k.key, 'base64') })));
  const signer = createSigner(Buffer.from(config.secrets.cookieKey, 'utf8'));
  const metadataDocuments = config.clientRegistration.metadataDocuments;
  const fetchDocument = createSafeFetch({
    timeoutMs: metadataDocuments.timeoutMs,
    maxBytes: metadataDocuments.maxBytes,
    allowInsecure: metadataDocuments.allowInsecure ?? config.mode === 'dev',
    extraCa: metadataDocuments.extraCa,
  });
  const configuredClients = createConfiguredClients(config.clients, {
    clock,
    customSchemes: config.clientRegistration.customSchemes,
    dev: config.mode === 'dev',
    logger,
  });
  const clients = createClients({ store, clock, fetchDocument, logger }, {
    configured: configuredClients,
    cimdEnabled: metadataDocuments.enabled,
    customSchemes: config.clientRegistration.customSchemes,
    unusedClientTtlSeconds: config.clientRegistration.unusedClientTtlSeconds,
    grantTtlSeconds: config.tokens.refreshTokenTtlSeconds,
  });
  const audit = await createAudit(config.audit, { signingKeyPem: config.secrets.signingKey, clock, logger, sink: deps.auditSink, env: deps.env });
  started.push(() => audit.close());
  const grants = createGrants({ store, clock, sealer, idp, audit, onValidation: metrics.tokenValidation }, config.tokens);
  const downstreamTokens = createDownstreamTokens({ store, clock, sealer, idp, signer, issuer });
  const resources = buildResources(config.publicUrl, config.backends, config.policy?.rules);
  const ctx: AuthServerContext = { config, issuer, store, clock, idp, clients, configuredClients, grants, sealer, signer, resources, logger, audit };

  const { app, raw, observe, clientIp } = createHttpApp(logger, {
    trustProxy: config.trustProxy,
    timeouts: config.timeouts,
    hsts: new URL(config.publicUrl).protocol === 'https:',
    tracer,
  });
  const { app: admin } = createHttpApp(logger, { timeouts: config.timeouts });
  registerHealth(app, admin, { store, idp, scrape: telemetry.scrape });
  observe(metrics.request);
  metrics.observeAudit(audit);
  metrics.observeProcess();
  registerMetadata(app, ctx);
  registerRegistration(app, ctx);
  registerAuthorize(app, ctx);
  registerConsent(app, ctx);
  registerCallback(app, ctx);
  registerToken(app, ctx, { downstreamTokens });
  registerRevoke(app, ctx);
  registerAccount(app, ctx);
  if (downstreamTokens) registerDownstreamConsent(app, ctx);
  registerLanding(app, { resources, upstream: idp.kind, devLogins: config.upstream.dev?.users.map((u) => u.login) });
  allowAnyOrigin(app, [
    ...ctx.resources.map((r) => `/.well-known/oauth-protected-resource${r.path}`),
    '/.well-known/oauth-protected-resource',
    '/.well-known/oauth-authorization-server',
    '/.well-known/openid-configuration',
    '/.well-known/jwks.json',
    '/register',
    '/token',
    '/revoke',
  ]);
  const proxy = await registerMcpProxy(app, {
    resources,
    routes: raw,
    clientIp,
    validateAccessToken: grants.validateAccessToken,
    store,
    clock,
    logger,
    publicUrl: issuer,
    allowedOrigins: config.allowedOrigins,
    listenHost: config.listen.host,
    signingKeyPem: config.secrets.signingKey,
    cacheMs: config.tokens.cacheMs,
    bodyTimeoutMs: config.timeouts.mcpBodyMs,
    globalPolicyRules: config.policy?.rules,
    globalPolicyQuotas: config.policy?.quotas,
    audit,
    telemetry: { metrics, tracer },
    ...(config.upstream.entra ? { overageGroups: createEntraGraphGroups(config.upstream.entra, { store, sealer, idp, clock, logger }) } : {}),
    downstreamTokens,
    describeClient: async (clientId) => {
      const client = await clients.find(clientId).catch(() => undefined);
      return { name: client?.clientName ?? '', kind: client?.kind ?? 'dcr' };
    },
  });

  started.push(() => proxy.close());
  // Closed before the proxy, as close() does (listeners first); harmless before they listen.
  started.push(() => Promise.all([app.close(), admin.close()]).then(() => {}));

  const address = await app.listen({ host: config.listen.host, port: config.listen.port });
  const adminAddress = await admin.listen({ host: config.admin.listen.host, port: config.admin.listen.port });
  logger.info({ address, adminAddress, issuer, upstream: idp.kind, store: config.store.kind }, 'gateway listening');
  return {
    url: address.replace('[::1]', 'localhost'),
    adminUrl: adminAddress.replace('[::1]', 'localhost'),
    ctx,
    devIdp,
    async close() {
      // Stop accepting; open streams are ended by the proxy's preClose hook; in-flight requests
      // drain within the grace period, then remaining connections are cut. Node closes idle
      // keep-alive connections only once, when close begins: those freed by a finished request
      // afterwards are closed as they go idle, so the drain ends with the last request.
      const idle = setInterval(() => app.server.closeIdleConnections(), IDLE_CLOSE_INTERVAL_MS);
      const force = setTimeout(() => app.server.closeAllConnections(), config.shutdownGraceSeconds * 1000);
      try {
        // The admin listener closes with it: probes stop seeing this replica ready.
        await Promise.all([app.close(), admin.close()]);
      } finally {
        clearInterval(idle);
        clearTimeout(force);
      }
      await proxy.close();
      await audit.close();
      await devIdp?.close();
      if (!deps.store) await store.close();
      if (!deps.telemetry) await telemetry.shutdown();
    },
  };
}

/** The Store's database as its spans name it: the Redis server's host and port, never its URL (it may carry a password). */
function storeDatabase(store: Config['store']): StoreDatabase {
  if (store.kind === 'sqlite') return { system: 'sqlite' };
  const url = new URL(store.url);
  return { system: 'redis', address: url.hostname, port: url.port ? Number(url.port) : 6379 };
}

async function openStore(config: Config, clock: Clock, getRedisCredential: GatewayDeps['getRedisCredential']): Promise<Store> {
  if (config.store.kind === 'sqlite') return SqliteStore.open({ path: config.store.path, clock });
  const { url, keyPrefix, tls, entraAuth } = config.store;
  return RedisStore.connect({
    url,
    keyPrefix,
    clock,
    getCredential: entraAuth && (getRedisCredential ?? entraRedisCredential(entraAuth)),
    // rediss:// verifies against the system CAs; a configured CA is trusted in addition.
    tls: tls && tlsTrustOptions(tls),
  });
}
