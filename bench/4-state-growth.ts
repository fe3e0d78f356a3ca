import { join } from 'node:path';
import { freePort } from '../test/support/ports.ts';
import { startRedis } from '../test/support/redis-server.ts';
import { type BenchContext, MCP_HEADERS, TOOLS_CALL_BODY } from './lib/context.ts';
import { benchToken, populateRedis, populateSqlite } from './lib/populate.ts';
import { startWorker, type Worker } from './lib/procs.ts';
import { fmtInt, round, type Section } from './lib/report.ts';

/**
 * Benchmark 4: p50 of a tools/call through the gateway as the Store grows (1k, 100k, 1M grants;
 * SQLite and Redis). The load rotates over many tokens spread across all grants, each revisited
 * less often than the 1 s token cache lasts, so (nearly) every call looks its token up in the Store.
 */
export async function stateGrowth(ctx: BenchContext): Promise<Section> {
  const section: Section = {
    id: 4,
    title: 'tools/call p50 as grants grow (token looked up in the Store on each call)',
    columns: ['store', 'grants', 'populate s', 'req/s (1 conn)', 'p50 ms', 'p99 ms', 'p50 vs smallest'],
    rows: [],
    notes: [],
    figures: {},
  };
  const levels = ctx.quick ? [1000, 10_000] : [1000, 100_000, 1_000_000];
  const sampleTokens = ctx.quick ? 500 : 5000;
  const seconds = ctx.quick ? 1 : 4;
  const workers: Worker[] = [];
  const redis = await startRedis();
  try {
    const backend = await startWorker('backend', { role: 'client' });
    workers.push(backend);
    const load = await startWorker('load', { role: 'client' });
    workers.push(load);
    for (const kind of ['sqlite', 'redis'] as const) {
      const port = await freePort();
      const resource = `http://127.0.0.1:${port}/mcp`;
      const path = join(ctx.tmp, 'b4.db');
      const keyPrefix = 'b4:';
      let populated = 0;
      let smallest = Number.NaN;
      for (const count of levels) {
        const t0 = performance.now();
        if (kind === 'sqlite') populateSqlite(path, resource, populated, count);
        else await populateRedis(redis.url, keyPrefix, resource, populated, count);
        const populateSeconds = (performance.now() - t0) / 1000;
        populated = count;
        const tokens = Array.from({ length: sampleTokens }, (_, k) => benchToken(Math.floor((k * count) / sampleTokens)));
        const gateway = await startWorker('gateway', {
          role: 'server',
          nodeArgs: ctx.gatewayNodeArgs,
          args: { port, backendUrl: backend.ready['url'], store: kind === 'sqlite' ? { kind, path } : { kind, url: redis.url, keyPrefix } },
        });
        try {
          const result = await load.call<{ rps: number; p50: number; p99: number; errors: number; non2xx: number }>({
            type: 'run',
            url: gateway.ready['mcpUrl'],
            connections: 1,
            durationSeconds: seconds,
            warmupSeconds: 0,
            warmupRequests: sampleTokens,
            headers: MCP_HEADERS,
            body: TOOLS_CALL_BODY,
            tokens,
          });
          if (result.errors + result.non2xx > 0) throw new Error(`${result.errors + result.non2xx} failed calls at ${count} grants`);
          if (Number.isNaN(smallest)) smallest = result.p50;
          const ratio = result.p50 / smallest;
          section.figures[`${kind}Spread`] = Math.max(section.figures[`${kind}Spread`] ?? 1, ratio);
          section.rows.push([kind, fmtInt(count), round(populateSeconds, 1), fmtInt(result.rps), round(result.p50, 3), round(result.p99, 3), `${round(ratio, 2)}×`]);
          ctx.log(`  ${kind} ${fmtInt(count)} grants: p50 ${round(result.p50, 3)} ms (populate ${round(populateSeconds, 1)} s)`);
        } finally {
          await gateway.stop();
        }
      }
    }
  } finally {
    for (const worker of workers.reverse()) await worker.stop();
    await redis.stop();
  }
  section.notes.push(
    `Each grant is two Store entries (grant + access-token record), written with bulk INSERTs (SQLite, one transaction) or pipelined SETs (Redis); levels are filled incrementally.`,
    `${fmtInt(sampleTokens)} tokens spread evenly over all grants, presented round-robin on 1 connection: a warm-up visits each once (identity assertions cached), then ${seconds} s measured, in which each token comes back after more than the 1 s token cache, so the Store is read on (nearly) every call.`,
    'Gateway on CPU 0; backend, load generator and redis-server elsewhere.',
  );
  return section;
}
