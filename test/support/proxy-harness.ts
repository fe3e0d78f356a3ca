import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Audit } from '../../src/audit/audit.ts';
import pino from 'pino';
import type { BackendConfig, PolicyQuotaConfig, PolicyRuleConfig, TimeoutsConfig } from '../../src/config/schema.ts';
import { createHttpApp } from '../../src/http/app.ts';
import { createGrants, type Grants, userKeyOf } from '../../src/oauth/grants.ts';
import { buildResources, type ProtectedResource } from '../../src/oauth/resources.ts';
import { createSealer } from '../../src/oauth/secrets.ts';
import { type Clock, systemClock } from '../../src/ports/clock.ts';
import type { Store } from '../../src/ports/store.ts';
import type { UpstreamIdp, UserIdentity } from '../../src/ports/idp.ts';
import { registerMcpProxy } from '../../src/proxy/register.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { freePort } from './ports.ts';

export const USERS = {
  alice: {
    issuer: 'https://idp.test/tenant-1/v2.0',
    subject: 'alice-sub',
    objectId: '11111111-1111-4111-8111-111111111111',
    tenantId: '00000000-0000-4000-8000-000000000001',
    name: 'Alice Admin',
    email: 'alice@example.com',
    preferredUsername: 'alice@example.com',
    roles: ['admin'],
    groups: ['g-1'],
  },
  bob: {
    issuer: 'https://idp.test/tenant-1/v2.0',
    subject: 'bob-sub',
    objectId: '22222222-2222-4222-8222-222222222222',
    tenantId: '00000000-0000-4000-8000-000000000001',
    name: 'Bob Builder',
    roles: [],
    groups: [],
  },
} satisfies Record<string, UserIdentity>;

export type BackendInput = Pick<BackendConfig, 'name' | 'path'> & Partial<BackendConfig>;

export interface ProxyHarnessOptions {
  backends: BackendInput[];
  allowedOrigins?: string[];
  /** Default 127.0.0.1 (loopback: Host checked). */
  listenHost?: string;
  keepAliveIntervalMs?: number;
  clock?: Clock;
  /** Config `timeouts` (default DEFAULT_TIMEOUTS). */
  timeouts?: TimeoutsConfig;
  /** The audit trail of MCP operations (default: none). */
  audit?: Audit;
  /** The gateway's Store, closed with it (default: an in-memory SQLite store). */
  store?: Store;
  /** Config `trustProxy` (default false). */
  trustProxy?: boolean | string[];
  /** Another replica's public URL and signing key, so this one serves the same resources and assertions. */
  replicaOf?: Pick<ProxyHarness, 'url' | 'signingKeyPem'>;
  /** Config `policy` (global rules and quotas, for every backend); default none. */
  policy?: { rules?: PolicyRuleConfig[]; quotas?: PolicyQuotaConfig[] };
}

export interface ProxyHarness {
  /** Base URL (http://127.0.0.1:<port>), also the publicUrl unless this is a replica (`replicaOf`). */
  url: string;
  app: FastifyInstance;
  store: Store;
  grants: Grants;
  resources: ProtectedResource[];
  signingKeyPem: string;
  /** Mints a real access token for a user and a backend (by name). */
  tokenFor(user: keyof typeof USERS, backend: string, scopes?: string[], identity?: Partial<UserIdentity>): Promise<string>;
  close(): Promise<void>;
}

export function backendConfig(input: BackendInput): BackendConfig {
  return {
    scopes: ['mcp:tools'],
    identityAssertion: { header: 'x-mcp-identity', ttlSeconds: 300 },
    connectTimeoutMs: 2000,
    headersTimeoutMs: 10_000,
    maxBodyBytes: 4 * 1024 * 1024,
    ...input,
  };
}

/** The proxy routes on a fastify app from createHttpApp, an in-memory store and real tokens. */
export async function startProxyHarness(options: ProxyHarnessOptions): Promise<ProxyHarness> {
  const clock = options.clock ?? systemClock;
  const port = await freePort();
  // Replicas share one public URL (behind a load balancer); each listens on its own port.
  const url = options.replicaOf?.url ?? `http://127.0.0.1:${port}`;
  const store = options.store ?? SqliteStore.open({ path: ':memory:', clock });
  const idp = {} as UpstreamIdp; // grants.create never calls the upstream
  const sealer = createSealer([{ id: 'k1', key: randomBytes(32) }]);
  const grants = createGrants({ store, clock, sealer, idp }, { accessTokenTtlSeconds: 3600, refreshTokenTtlSeconds: 86400 });
  const resources = buildResources(url, options.backends.map(backendConfig));
  const signingKeyPem =
    options.replicaOf?.signingKeyPem ?? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const { app, raw, clientIp } = createHttpApp(pino({ level: 'silent' }), { timeouts: options.timeouts, trustProxy: options.trustProxy });
  const proxy = await registerMcpProxy(
    app,
    {
      resources,
      routes: raw,
      clientIp,
      validateAccessToken: grants.validateAccessToken,
      store,
      clock,
      logger: pino({ level: 'silent' }),
      publicUrl: url,
      allowedOrigins: options.allowedOrigins ?? [],
      listenHost: options.listenHost ?? '127.0.0.1',
      signingKeyPem,
      bodyTimeoutMs: options.timeouts?.mcpBodyMs,
      audit: options.audit,
      globalPolicyRules: options.policy?.rules,
      globalPolicyQuotas: options.policy?.quotas,
    },
    options.keepAliveIntervalMs !== undefined ? { keepAliveIntervalMs: options.keepAliveIntervalMs } : {},
  );
  await app.listen({ host: '127.0.0.1', port });
  return {
    url: `http://127.0.0.1:${port}`,
    app,
    store,
    grants,
    resources,
    signingKeyPem,
    async tokenFor(user, backend, scopes, overrides) {
      const resource = resources.find((r) => r.name === backend)!;
      const identity = { ...USERS[user], ...overrides };
      const { tokens } = await grants.create({
        user: identity,
        userKey: userKeyOf(identity),
        clientId: 'https://client.example/metadata.json',
        scopes: scopes ?? resource.scopes,
        resource: resource.resource,
      });
      return tokens.access_token;
    },
    async close() {
      // Clients may leave a connection opened but never used (undici after an abort): not idle
      // to node:http, so close() alone would wait for its timeout.
      const closing = app.close();
      app.server.closeAllConnections();
      await closing;
      await proxy.close();
      await store.close();
    },
  };
}
