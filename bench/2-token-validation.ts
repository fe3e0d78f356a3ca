import { join } from 'node:path';
import { startRedis } from '../test/support/redis-server.ts';
import type { BenchContext } from './lib/context.ts';
import { startWorker } from './lib/procs.ts';
import { fmtInt, round, type Section } from './lib/report.ts';

/**
 * Benchmark 2: token validations per second on one core (the worker is pinned), SQLite and Redis,
 * with and without the in-process cache; and a revocation made through another replica refused
 * within the cache bound (MAX_TOKEN_CACHE_MS).
 */
export async function tokenValidation(ctx: BenchContext): Promise<Section> {
  const section: Section = {
    id: 2,
    title: 'Token validation (validateAccessToken, one core)',
    columns: ['store', 'cache', 'in flight', 'validations/s', 'revoked token refused after'],
    rows: [],
    notes: [],
    figures: {},
  };
  const seconds = ctx.quick ? 0.5 : 3;
  const redis = await startRedis();
  try {
    for (const kind of ['sqlite', 'redis'] as const) {
      const store = kind === 'sqlite' ? { kind, path: join(ctx.tmp, 'b2.db') } : { kind, url: redis.url, keyPrefix: 'b2:' };
      const worker = await startWorker('validate', { role: 'server', args: { store } });
      try {
        const { refusedAfterMs } = await worker.call<{ refusedAfterMs: number }>({ type: 'revocation' });
        section.figures[`${kind}RevokedAfterMs`] = refusedAfterMs;
        for (const cache of [true, false]) {
          // SQLite answers synchronously: one lane. Redis is a round trip: keep 64 in flight.
          const concurrency = kind === 'redis' && !cache ? 64 : 1;
          const { perSecond } = await worker.call<{ perSecond: number }>({ type: 'rate', cache, seconds, concurrency });
          section.figures[`${kind}${cache ? 'Cached' : 'Uncached'}`] = perSecond;
          section.rows.push([kind, cache ? 'in-process ≤ 1 s' : 'none', concurrency, fmtInt(perSecond), cache ? `${round(refusedAfterMs, 0)} ms` : '—']);
          ctx.log(`  ${kind} cache=${cache}: ${fmtInt(perSecond)}/s`);
        }
      } finally {
        await worker.stop();
      }
    }
  } finally {
    await redis.stop();
  }
  section.notes.push(
    `${seconds} s per row after a discarded warm-up; 256 real tokens (created through createGrants) validated round-robin.`,
    'The worker runs on CPU 0 alone; redis-server runs unpinned. "Revoked … after": a second replica (createGrants on the same Store) revokes the token; the first, which had it cached, refuses it after this long (bound: 1000 ms).',
  );
  return section;
}
