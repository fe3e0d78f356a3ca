import { generateKeyPairSync, randomBytes } from 'node:crypto';
import pino from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import { DEV_POLICY_QUOTAS, DEV_POLICY_RULES } from '../../src/dev.ts';
import { startGateway } from '../../src/gateway.ts';
import { userKeyOf } from '../../src/oauth/grants.ts';
import { systemClock } from '../../src/ports/clock.ts';
import type { AccessTokenRecord } from '../../src/ports/records.ts';
import type { Store } from '../../src/ports/store.ts';
import { createIdentityAssertions } from '../../src/proxy/identity-assertion.ts';
import { RedisStore } from '../../src/store/redis.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { startTelemetry, type Telemetry, telemetryExport } from '../../src/telemetry/sdk.ts';
import { freePort } from '../../test/support/ports.ts';
import { serveWorker, workerArgs } from '../lib/procs.ts';
import { BENCH_USER, DEV_USERS } from '../lib/users.ts';

export interface GatewayWorkerArgs {
  backendUrl: string;
  store: { kind: 'sqlite'; path: string } | { kind: 'redis'; url: string; keyPrefix: string };
  /** Listen port (benchmark 4 writes records for this resource before the gateway starts). */
  port?: number;
  /** Time every Store call (benchmark 5). */
  instrumentStore?: boolean;
  /** `tokens.cacheMs` (benchmark 4: 0, so every call reads the Store). */
  tokenCacheMs?: number;
  /** The dev system's sample policy, rules and quotas (src/dev.ts), on the backend (benchmark 1's feature variants). */
  policy?: boolean;
  /** The audit trail to this file (arguments `hash`, the default); off when absent. */
  auditFile?: string;
  /** Start the telemetry SDK from this process's OTEL_* environment, as src/main.ts does; none when false. */
  telemetry?: boolean;
  /**
   * The URL the gateway is known by and the key it signs identity assertions with (default: its
   * own listen URL, a fresh key). Benchmark 1's feature variants listen elsewhere but share the
   * plain gateway's, so the one snippets server behind them all accepts their assertions.
   */
  publicUrl?: string;
  signingKey?: string;
}

/**
 * The real gateway (startGateway: fastify, dev IdP upstream, the configured Store) in its own
 * process, fronting one backend at /mcp (+ legacy /mcp/sse). Answers `mint` with a real access
 * token, `stats` with Store timings and CPU use, `gc` with RSS after a full collection.
 */
const args = workerArgs<GatewayWorkerArgs>();
const port = args.port ?? (await freePort());
const listenUrl = `http://127.0.0.1:${port}`;
const publicUrl = args.publicUrl ?? listenUrl;
const signingKey = args.signingKey ?? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const config = loadConfig({
  yamlText: JSON.stringify({
    mode: 'dev',
    publicUrl,
    listen: { host: '127.0.0.1', port },
    admin: { listen: { host: '127.0.0.1', port: 0 } },
    store: args.store,
    secrets: {
      encryptionKeys: [{ id: 'bench', key: randomBytes(32).toString('base64') }],
      cookieKey: randomBytes(32).toString('base64url'),
      signingKey,
    },
    upstream: { dev: { port: 0, users: DEV_USERS } },
    backends: [
      {
        name: 'bench',
        path: '/mcp',
        url: `${args.backendUrl}/mcp`,
        sseUrl: `${args.backendUrl}/sse`,
        credential: { header: 'x-functions-key', value: 'bench-backend-key' },
        ...(args.policy ? { policy: { rules: DEV_POLICY_RULES, quotas: DEV_POLICY_QUOTAS } } : {}),
      },
    ],
    ...(args.tokenCacheMs === undefined ? {} : { tokens: { cacheMs: args.tokenCacheMs } }),
    // Benchmark 5 signs in from one address far more often than a person does.
    rateLimits: { registrationsPerHour: 0, tokenRequestsPerMinute: 0, authorizationsPerMinute: 0 },
    logLevel: 'error',
    // Off unless asked: its cost is measured by benchmark 1's feature variants.
    audit: args.auditFile ? { sink: 'file', file: { path: args.auditFile } } : { sink: 'off' },
  }),
  env: {},
});

const stats = { calls: 0, ms: 0, byMethod: {} as Record<string, number> };
const rawStore: Store =
  args.store.kind === 'sqlite'
    ? SqliteStore.open({ path: args.store.path, clock: systemClock })
    : await RedisStore.connect({ url: args.store.url, keyPrefix: args.store.keyPrefix, commandTimeoutMs: 5000 });
const store = args.instrumentStore ? timed(rawStore) : rawStore;
// As src/main.ts starts it (the SDK reads the OTEL_* variables the bench set in this process's environment).
const telemetry: Telemetry | undefined = args.telemetry ? await startTelemetry(telemetryExport(process.env), process.env) : undefined;
if (args.telemetry && !telemetry?.tracer) throw new Error('telemetry asked for, but OTEL_* in the environment start no tracing SDK');
const gateway = await startGateway(config, { env: {}, store, logger: pino({ level: 'error' }), ...(telemetry ? { telemetry } : {}) });
const resource = gateway.ctx.resources[0]!;

async function mint(): Promise<string> {
  const { tokens } = await gateway.ctx.grants.create({
    user: BENCH_USER,
    userKey: userKeyOf(BENCH_USER),
    clientId: 'https://client.bench/metadata.json',
    scopes: resource.scopes,
    resource: resource.resource,
  });
  return tokens.access_token;
}

/**
 * An identity assertion for BENCH_USER as the gateway signs them (same key, issuer, audience),
 * for the paths that reach the real backend without the gateway (direct, nginx, node proxy).
 */
async function assertion(ttlSeconds: number): Promise<string> {
  const assertions = await createIdentityAssertions({ signingKeyPem: signingKey, issuer: publicUrl, clock: systemClock });
  const record: AccessTokenRecord = {
    grantId: 'bench',
    clientId: 'https://client.bench/metadata.json',
    userKey: userKeyOf(BENCH_USER),
    user: BENCH_USER,
    scopes: resource.scopes,
    resource: resource.resource,
    expiresAt: systemClock.nowSeconds() + ttlSeconds,
  };
  return assertions.assertionFor('bench', record, resource.resource, ttlSeconds);
}

let cpuMark = process.cpuUsage();
serveWorker(
  // Where to reach it: its listen URL (the resource's path under it), which a variant's publicUrl is not.
  { url: listenUrl, mcpUrl: `${listenUrl}${new URL(resource.resource).pathname}`, token: await mint() },
  async (message) => {
    switch (message['type']) {
      case 'mint':
        return { token: await mint() };
      case 'assertion':
        return { assertion: await assertion(Number(message['ttlSeconds'])) };
      case 'resetStats':
        stats.calls = 0;
        stats.ms = 0;
        stats.byMethod = {};
        cpuMark = process.cpuUsage();
        return {};
      case 'stats': {
        const cpu = process.cpuUsage(cpuMark);
        return { ...stats, cpuMs: (cpu.user + cpu.system) / 1000 };
      }
      case 'gc':
        for (let i = 0; i < 3; i++) globalThis.gc?.();
        return { rss: process.memoryUsage().rss, heapUsed: process.memoryUsage().heapUsed };
      default:
        throw new Error(`unknown message ${String(message['type'])}`);
    }
  },
  async () => {
    await gateway.close();
    await rawStore.close();
    await telemetry?.shutdown().catch(() => {});
  },
);

/** The Store with every call timed (wall time: for SQLite that is its CPU time, for Redis a round trip). */
function timed(inner: Store): Store {
  return new Proxy(inner, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function' || name === 'close') return typeof value === 'function' ? value.bind(target) : value;
      return async (...callArgs: unknown[]) => {
        const start = performance.now();
        try {
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, callArgs);
        } finally {
          stats.calls++;
          stats.ms += performance.now() - start;
          stats.byMethod[String(name)] = (stats.byMethod[String(name)] ?? 0) + 1;
        }
      };
    },
  });
}
