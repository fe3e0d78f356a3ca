import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pino from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import { startGateway } from '../../src/gateway.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { type RedisCredential, RedisStore } from '../../src/store/redis.ts';
import { DEV_USERS } from '../support/gateway-harness.ts';
import { type RunningRedis, startRedis } from '../support/redis-server.ts';
import { sharedSecrets } from '../support/scale-cluster.ts';

const TOKEN_LIFETIME_SECONDS = 2;
/** Bound for anything that should happen within one token lifetime. */
const WAIT_MS = 4000;

/**
 * Azure Managed Redis with Microsoft Entra authentication, played by a local redis-server: the
 * gateway's Redis user is an ACL user whose password is "the token", rotated by the test as Entra
 * would issue a new one; the credential provider hands out the current one (the Entra adapter,
 * store/redis-entra.ts, gives the Azure SDK's token the same way).
 */
describe('Redis store with a short-lived credential (store.entraAuth)', () => {
  let redis: RunningRedis;
  let admin: Redis;
  let store: RedisStore;
  let token = 'token-1';
  /** Every password handed out, in order. */
  const issued: string[] = [];
  const getCredential = async (): Promise<RedisCredential> => {
    issued.push(token);
    return { username: 'gateway', password: token, expiresAt: systemClock.nowSeconds() + TOKEN_LIFETIME_SECONDS };
  };

  before(async () => {
    redis = await startRedis({ users: { admin: 'admin-password', gateway: token } });
    admin = new Redis(redis.url, { username: 'admin', password: 'admin-password', lazyConnect: true });
    await admin.connect();
    store = await RedisStore.connect({ url: redis.url, getCredential });
  });
  after(async () => {
    await store?.close();
    admin?.disconnect();
    await redis?.stop();
  });

  /** The gateway's connections: `id=… user=gateway …` lines of CLIENT LIST. */
  const gatewayClientIds = async (): Promise<string[]> => {
    const list = (await admin.call('CLIENT', 'LIST')) as string;
    return list
      .split('\n')
      .filter((line) => / user=gateway /.test(line))
      .map((line) => /^id=(\d+)/.exec(line)![1]!);
  };
  const authStats = async (): Promise<{ calls: number; failed: number }> => {
    const info = await admin.info('commandstats');
    const line = /cmdstat_auth:calls=(\d+),.*failed_calls=(\d+)/.exec(info);
    return { calls: Number(line?.[1] ?? 0), failed: Number(line?.[2] ?? 0) };
  };
  const rotate = async (next: string) => {
    await admin.call('ACL', 'SETUSER', 'gateway', 'resetpass', `>${next}`);
    token = next;
  };

  it('connects as the credential’s user with its password (no password in the url)', async () => {
    await store.set('k', 'v1');
    assert.equal(await store.get('k'), 'v1');
    assert.equal((await gatewayClientIds()).length, 1);
  });

  it('refuses a url that carries a password together with a credential', async () => {
    await assert.rejects(
      RedisStore.connect({ url: `redis://:pw@127.0.0.1:${redis.port}`, getCredential }),
      { name: 'TypeError', message: 'Redis url must carry no user or password when a credential (Entra authentication) is used' },
    );
  });

  it('before the token expires, the live connection is re-AUTHenticated with the new one and keeps working', async () => {
    const [connection] = await gatewayClientIds();
    await rotate('token-2');
    const rotated = await authStats();
    // The refresh comes at 80 % of the token's remaining lifetime (≤ 2 s here); from now on
    // Redis accepts only token-2 for this user.
    const deadline = Date.now() + WAIT_MS;
    while (Date.now() < deadline && !(issued.at(-1) === 'token-2' && (await authStats()).calls > rotated.calls)) await sleep(50);
    const refreshed = await authStats();
    assert.equal(issued.at(-1), 'token-2', 'a new credential was fetched');
    assert.equal(refreshed.calls, rotated.calls + 1, 'one AUTH was sent');
    assert.equal(refreshed.failed, 0, 'the AUTH succeeded: it carried the rotated token');
    assert.deepEqual(await gatewayClientIds(), [connection], 'on the same, live connection');
    await store.set('k', 'v2');
    assert.equal(await store.get('k'), 'v2');
  });

  it('a reconnect authenticates with the current token', async () => {
    await rotate('token-3');
    const deadline = Date.now() + WAIT_MS;
    while (Date.now() < deadline && issued.at(-1) !== 'token-3') await sleep(50);
    const [old] = await gatewayClientIds();
    await admin.call('CLIENT', 'KILL', 'USER', 'gateway');
    let value: unknown;
    while (Date.now() < deadline + WAIT_MS && value === undefined) {
      value = await store.get('k').catch(() => undefined);
      if (value === undefined) await sleep(50);
    }
    assert.equal(value, 'v2');
    const ids = await gatewayClientIds();
    assert.equal(ids.length, 1);
    assert.notEqual(ids[0], old, 'a new connection');
    assert.equal((await authStats()).failed, 0, 'no AUTH with a stale token');
  });

  it('the gateway with store.entraAuth connects with the credential and is ready', async () => {
    const yamlText = JSON.stringify({
      mode: 'dev',
      publicUrl: 'http://localhost:8080',
      listen: { host: '127.0.0.1', port: 0 },
      admin: { listen: { host: '127.0.0.1', port: 0 } },
      store: { kind: 'redis', url: redis.url, keyPrefix: 'entra:', entraAuth: { username: 'gateway' } },
      secrets: sharedSecrets(),
      upstream: { dev: { port: 0, users: DEV_USERS } },
      backends: [{ name: 'test', path: '/mcp', url: 'http://127.0.0.1:9/mcp' }],
      logLevel: 'silent',
    });
    const gateway = await startGateway(loadConfig({ yamlText, env: {} }), {
      env: {},
      logger: pino({ level: 'silent' }),
      getRedisCredential: getCredential,
    });
    try {
      assert.equal((await fetch(`${gateway.adminUrl}/readyz`)).status, 200);
      await gateway.ctx.store.set('probe', 1);
      assert.equal(await admin.get('entra:probe'), '1');
    } finally {
      await gateway.close();
    }
  });
});
