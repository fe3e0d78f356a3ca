import { join } from 'node:path';
import { startRedis } from '../test/support/redis-server.ts';
import type { BenchContext } from './lib/context.ts';
import { startWorker } from './lib/procs.ts';
import { round, type Section } from './lib/report.ts';

interface Stats {
  calls: number;
  ms: number;
  cpuMs: number;
  byMethod: Record<string, number>;
}

/**
 * Benchmark 5: complete sign-ins per second (register → token) against the dev IdP, SQLite and
 * Redis, with the Store's share measured separately: every Store call in the gateway process
 * (authorization server and dev IdP alike) is timed.
 */
export async function signIn(ctx: BenchContext): Promise<Section> {
  const section: Section = {
    id: 5,
    title: 'Sign-in throughput (register → authorize → consent → dev IdP → callback → consent as the user → token)',
    columns: ['store', 'clients in parallel', 'sign-ins/s', 'p50 ms', 'gateway CPU ms / sign-in', 'Store calls / sign-in', 'Store ms / sign-in', 'Store share of gateway CPU'],
    rows: [],
    notes: [],
    figures: {},
  };
  const seconds = ctx.quick ? 1.5 : 6;
  const concurrency = 4;
  const redis = await startRedis();
  const backend = await startWorker('backend', { role: 'client' });
  const clients = await startWorker('sign-in', { role: 'client' });
  try {
    for (const kind of ['sqlite', 'redis'] as const) {
      const store = kind === 'sqlite' ? { kind, path: join(ctx.tmp, 'b5.db') } : { kind, url: redis.url, keyPrefix: 'b5:' };
      const gateway = await startWorker('gateway', {
        role: 'server',
        nodeArgs: ctx.gatewayNodeArgs,
        args: { backendUrl: backend.ready['url'], store, instrumentStore: true },
      });
      try {
        await gateway.call({ type: 'resetStats' });
        const run = await clients.call<{ count: number; perSecond: number; p50: number }>({ type: 'run', url: gateway.ready['url'], concurrency, seconds });
        const stats = await gateway.call<Stats>({ type: 'stats' });
        const n = run.count + 1; // the warm-up sign-in ran after resetStats too
        const storeShare = stats.ms / stats.cpuMs;
        section.figures[`${kind}SignInsPerSecond`] = run.perSecond;
        section.figures[`${kind}StoreShare`] = storeShare;
        section.rows.push([
          kind,
          concurrency,
          round(run.perSecond, 1),
          round(run.p50, 1),
          round(stats.cpuMs / n, 2),
          round(stats.calls / n, 1),
          round(stats.ms / n, 2),
          kind === 'sqlite' ? `${round(100 * storeShare, 1)}%` : 'n/a (round trips overlap)',
        ]);
        ctx.log(`  ${kind}: ${round(run.perSecond, 1)} sign-ins/s, store ${round(stats.ms / n, 2)} ms of ${round(stats.cpuMs / n, 2)} ms CPU per sign-in`);
      } finally {
        await gateway.stop();
      }
    }
  } finally {
    await clients.stop();
    await backend.stop();
    await redis.stop();
  }
  section.notes.push(
    `${concurrency} clients sign in back to back for ${seconds} s after one warm-up sign-in; each sign-in registers a new client (DCR), approves consent, logs in at the dev IdP (oidc-provider, in the gateway process) and confirms consent as the signed-in user.`,
    'Store ms: wall time inside Store calls in the gateway process (SQLite: synchronous, so CPU; Redis: round trips, which overlap other work, so the share can read high). Gateway CPU: process.cpuUsage over the run, dev IdP included.',
  );
  return section;
}
