import { randomBytes } from 'node:crypto';
import { createGrants, userKeyOf } from '../../src/oauth/grants.ts';
import { createSealer } from '../../src/oauth/secrets.ts';
import { systemClock } from '../../src/ports/clock.ts';
import type { UpstreamIdp } from '../../src/ports/idp.ts';
import type { Store } from '../../src/ports/store.ts';
import { RedisStore } from '../../src/store/redis.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { serveWorker, workerArgs } from '../lib/procs.ts';
import { BENCH_USER } from '../lib/users.ts';

/**
 * Benchmark 2's worker, pinned to one core: `validateAccessToken` in a loop against a real Store
 * (SQLite file or Redis), with the in-process cache (default ≤ 1 s) or without it (cacheMs 0).
 */
interface Args {
  store: { kind: 'sqlite'; path: string } | { kind: 'redis'; url: string; keyPrefix: string };
}
const args = workerArgs<Args>();
const store: Store =
  args.store.kind === 'sqlite'
    ? SqliteStore.open({ path: args.store.path, clock: systemClock })
    : await RedisStore.connect({ url: args.store.url, keyPrefix: args.store.keyPrefix, commandTimeoutMs: 5000 });
const sealer = createSealer([{ id: 'k', key: randomBytes(32) }]);
const options = { accessTokenTtlSeconds: 3600, refreshTokenTtlSeconds: 86_400 };
const deps = { store, clock: systemClock, sealer, idp: {} as UpstreamIdp };
const cached = createGrants(deps, options);
const uncached = createGrants(deps, { ...options, cacheMs: 0 });
/** A second replica on the same Store: it revokes, the first must notice within its cache bound. */
const otherReplica = createGrants(deps, options);
const resource = 'http://127.0.0.1/mcp';
const clientId = 'https://client.bench/metadata.json';

async function mint(count: number): Promise<string[]> {
  const tokens: string[] = [];
  for (let i = 0; i < count; i++) {
    const { tokens: issued } = await cached.create({ user: BENCH_USER, userKey: userKeyOf(BENCH_USER), clientId, scopes: ['mcp:tools'], resource });
    tokens.push(issued.access_token);
  }
  return tokens;
}

const tokens = await mint(256);

/** Validations per second over `seconds`, `concurrency` in flight (Redis needs it; SQLite is synchronous). */
async function rate(cache: boolean, seconds: number, concurrency: number): Promise<number> {
  const grants = cache ? cached : uncached;
  let done = 0;
  let failures = 0;
  const deadline = performance.now() + seconds * 1000;
  async function lane(offset: number) {
    let i = offset;
    while (performance.now() < deadline) {
      // Batches between clock reads keep the loop's own cost small.
      for (let j = 0; j < 64; j++) {
        const record = await grants.validateAccessToken(tokens[i++ & 255]!);
        if (!record) failures++;
      }
      done += 64;
    }
  }
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, (_, k) => lane(k * 7)));
  if (failures > 0) throw new Error(`${failures} validations failed`);
  return done / ((performance.now() - start) / 1000);
}

serveWorker({}, async (message) => {
  if (message['type'] === 'rate') {
    const seconds = Number(message['seconds']);
    const concurrency = Number(message['concurrency']);
    // Warm-up (JIT, page cache), discarded.
    await rate(Boolean(message['cache']), Math.min(1, seconds / 2), concurrency);
    return { perSecond: await rate(Boolean(message['cache']), seconds, concurrency) };
  }
  if (message['type'] === 'revocation') {
    const [token] = await mint(1);
    if (!(await cached.validateAccessToken(token!))) throw new Error('fresh token refused');
    const revokedAt = performance.now();
    await otherReplica.revokeToken(token!, clientId);
    while (await cached.validateAccessToken(token!)) {
      if (performance.now() - revokedAt > 5000) return { refusedAfterMs: Number.POSITIVE_INFINITY };
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return { refusedAfterMs: performance.now() - revokedAt };
  }
  throw new Error(`unknown message ${String(message['type'])}`);
}, () => store.close());
