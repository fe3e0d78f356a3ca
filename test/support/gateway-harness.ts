import { generateKeyPairSync, randomBytes } from 'node:crypto';
import pino, { type Logger } from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import type { Clock } from '../../src/ports/clock.ts';
import type { Store } from '../../src/ports/store.ts';
import { freePort } from './ports.ts';

export const DEV_USERS = [
  { login: 'alice', password: 'alice-password', name: 'Alice Admin', email: 'alice@example.com', roles: ['admin'], groups: ['g-1'] },
  { login: 'bob', password: 'bob-password', name: 'Bob Builder', email: 'bob@example.com', roles: [], groups: [] },
];

/** A clock tests can move forward. */
export function mutableClock(start = Math.floor(Date.now() / 1000)): Clock & { advance(seconds: number): void } {
  let nowMs = start * 1000;
  return {
    nowSeconds: () => Math.floor(nowMs / 1000),
    nowMs: () => nowMs,
    advance(seconds) {
      nowMs += seconds * 1000;
    },
  };
}

export interface HarnessOptions {
  /** Listen port (default: a free one); choose it first when an IdP must know the redirect URI. */
  port?: number;
  clock?: Clock;
  store?: Store;
  /** Extra/overriding config (merged shallowly at the top level). */
  config?: Record<string, unknown>;
  backends?: Record<string, unknown>[];
  upstream?: Record<string, unknown>;
  env?: Record<string, string | undefined>;
  getFederatedAssertion?: () => Promise<string>;
  /** The gateway's logger (default: silent). */
  logger?: Logger;
}

export interface Harness extends RunningGateway {
  publicUrl: string;
  mcpUrl: string;
}

/** The real gateway, in-process, on a loopback port, with the dev IdP unless another upstream is given. */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const port = options.port ?? (await freePort());
  const publicUrl = `http://localhost:${port}`;
  const raw = {
    mode: 'dev',
    publicUrl,
    listen: { host: '127.0.0.1', port },
    // Many gateways run at once: each admin listener on a free port (RunningGateway.adminUrl).
    admin: { listen: { host: '127.0.0.1', port: 0 } },
    secrets: {
      encryptionKeys: [{ id: 'test-1', key: randomBytes(32).toString('base64') }],
      cookieKey: randomBytes(32).toString('base64url'),
      signingKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    },
    upstream: options.upstream ?? { dev: { port: 0, users: DEV_USERS } },
    backends: options.backends ?? [{ name: 'snippets', path: '/mcp', url: 'http://127.0.0.1:9/mcp', sseUrl: 'http://127.0.0.1:9/sse' }],
    logLevel: 'silent',
    audit: { sink: 'off' },
    ...options.config,
  };
  const config = loadConfig({ yamlText: JSON.stringify(raw), env: options.env ?? {} });
  const { SqliteStore } = await import('../../src/store/sqlite.ts');
  const clock = options.clock;
  const store = options.store ?? SqliteStore.open({ path: ':memory:', clock: clock ?? { nowSeconds: () => Math.floor(Date.now() / 1000) } });
  const gateway = await startGateway(config, {
    env: options.env ?? {},
    clock,
    store,
    logger: options.logger ?? pino({ level: 'silent' }),
    getFederatedAssertion: options.getFederatedAssertion,
  });
  return {
    ...gateway,
    publicUrl,
    mcpUrl: `${publicUrl}/mcp`,
    async close() {
      await gateway.close();
      if (!options.store) await store.close();
    },
  };
}
