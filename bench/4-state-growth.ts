import { join } from 'node:path';
import { freePort } from '../test/support/ports.ts';
import { type RunningRedis, startRedis } from '../test/support/redis-server.ts';
import { type BenchContext, type LoadResult, MCP_HEADERS, TOOLS_CALL_BODY } from './lib/context.ts';
import { benchToken, populateRedis, populateSqlite } from './lib/populate.ts';
import { startWorker, type Worker } from './lib/procs.ts';
import { fmtInt, round, type Section } from './lib/report.ts';

interface Level {
  count: number;
  populateSeconds: number;
  gateway: Worker;
  tokens: string[];
  /** Store processes whose CPU is counted with the gateway's (redis-server). */
  storePids: number[];
  runs: { rps: number; p50: number; p99: number; gatewayUs: number; storeUs: number }[];
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/**
 * Benchmark 4: a tools/call through the gateway as the Store grows (1k, 100k, 1M grants; SQLite
 * and Redis). Every level has its own Store (a SQLite file, a redis-server) and gateway, all alive
 * at once, and the levels are measured in interleaved rounds (order rotated), as benchmark 1's
 * paths are: on a shared machine, drift between minutes-apart measurements exceeds the 10% band
 * being checked. The gateways run with `tokens.cacheMs: 0`, so every call looks its token up in
 * the Store; the load rotates over tokens spread across all the level's grants.
 */
export async function stateGrowth(ctx: BenchContext): Promise<Section> {
  const section: Section = {
    id: 4,
    title: 'tools/call as grants grow (token looked up in the Store on each call)',
    columns: ['store', 'grants', 'populate s', 'req/s (1 conn)', 'p50 ms', 'p50 of the rounds, min–max ms', 'p99 ms', 'p50 vs smallest', 'gateway CPU µs/call', 'store CPU µs/call'],
    rows: [],
    notes: [],
    figures: {},
  };
  const counts = ctx.quick ? [1000, 10_000] : [1000, 100_000, 1_000_000];
  const sampleTokens = ctx.quick ? 500 : 1000;
  const seconds = ctx.quick ? 1 : 3;
  const rounds = ctx.quick ? 1 : 5;
  const workers: Worker[] = [];
  const redises: RunningRedis[] = [];
  try {
    const backend = await startWorker('backend', { role: 'client' });
    workers.push(backend);
    const load = await startWorker('load', { role: 'client' });
    workers.push(load);
    for (const kind of ['sqlite', 'redis'] as const) {
      const levels: Level[] = [];
      for (const count of counts) {
        const port = await freePort();
        const resource = `http://127.0.0.1:${port}/mcp`;
        const path = join(ctx.tmp, `b4-${count}.db`);
        const keyPrefix = 'b4:';
        const redis = kind === 'redis' ? await startRedis() : undefined;
        if (redis) redises.push(redis);
        const t0 = performance.now();
        if (redis) await populateRedis(redis.url, keyPrefix, resource, 0, count);
        else populateSqlite(path, resource, 0, count);
        const populateSeconds = (performance.now() - t0) / 1000;
        const gateway = await startWorker('gateway', {
          role: 'server',
          nodeArgs: ctx.gatewayNodeArgs,
          args: { port, backendUrl: backend.ready['url'], store: redis ? { kind, url: redis.url, keyPrefix } : { kind, path }, tokenCacheMs: 0 },
        });
        workers.push(gateway);
        // As many distinct tokens at every level (the smallest level's grant count at most), spread evenly.
        const tokens = Array.from({ length: sampleTokens }, (_, k) => benchToken(Math.floor((k * count) / sampleTokens)));
        levels.push({ count, populateSeconds, gateway, tokens, storePids: redis ? [redis.pid] : [], runs: [] });
        ctx.log(`  ${kind} ${fmtInt(count)} grants populated in ${round(populateSeconds, 1)} s`);
      }
      for (let r = 0; r < rounds; r++) {
        for (let i = 0; i < levels.length; i++) {
          const level = levels[(i + r) % levels.length]!;
          const result = await load.call<LoadResult>({
            type: 'run',
            url: level.gateway.ready['mcpUrl'],
            connections: 1,
            durationSeconds: seconds,
            warmupSeconds: 0,
            // The first round visits each token once first (identity assertions cached, JIT warm).
            warmupRequests: r === 0 ? sampleTokens : 1,
            headers: MCP_HEADERS,
            body: TOOLS_CALL_BODY,
            tokens: level.tokens,
            cpuPids: { gateway: [level.gateway.pid], store: level.storePids },
          });
          if (result.errors + result.non2xx > 0) throw new Error(`${result.errors + result.non2xx} failed calls at ${level.count} grants`);
          level.runs.push({
            rps: result.rps,
            p50: result.p50,
            p99: result.p99,
            gatewayUs: result.cpuUsPerRequest['gateway']!,
            storeUs: result.cpuUsPerRequest['store']!,
          });
          ctx.log(`  ${kind} ${fmtInt(level.count)} grants, round ${r + 1}: p50 ${round(result.p50, 3)} ms, gateway ${round(result.cpuUsPerRequest['gateway']!, 1)} µs CPU/call`);
        }
      }
      const smallest = median(levels[0]!.runs.map((run) => run.p50));
      for (const level of levels) {
        const p50 = median(level.runs.map((run) => run.p50));
        const ratio = p50 / smallest;
        section.figures[`${kind}Spread`] = Math.max(section.figures[`${kind}Spread`] ?? 1, ratio);
        section.rows.push([
          kind,
          fmtInt(level.count),
          round(level.populateSeconds, 1),
          fmtInt(median(level.runs.map((run) => run.rps))),
          round(p50, 3),
          `${round(Math.min(...level.runs.map((run) => run.p50)), 3)}–${round(Math.max(...level.runs.map((run) => run.p50)), 3)}`,
          round(median(level.runs.map((run) => run.p99)), 3),
          `${round(ratio, 2)}×`,
          round(median(level.runs.map((run) => run.gatewayUs)), 1),
          kind === 'redis' ? round(median(level.runs.map((run) => run.storeUs)), 1) : '(in gateway)',
        ]);
      }
      for (const level of levels) await level.gateway.stop();
      for (const redis of redises.splice(0)) await redis.stop();
    }
  } finally {
    for (const worker of workers.reverse()) await worker.stop();
    for (const redis of redises) await redis.stop();
  }
  section.notes.push(
    'Each level is its own Store (a SQLite file; a redis-server) filled from empty: each grant is two entries (grant + access-token record), written with bulk INSERTs (SQLite, one transaction) or pipelined SETs (Redis).',
    `${fmtInt(sampleTokens)} distinct tokens spread evenly over each level's grants, presented round-robin on 1 connection; the first round visits each once before measuring (identity assertions cached). ${rounds} interleaved round(s) of ${seconds} s per level (order rotated); figures are the median over rounds; when one level's own rounds spread wider than the levels differ, the comparison is the machine's noise, not the Store's. The gateways run with \`tokens.cacheMs: 0\`: every call reads its token from the Store.`,
    'CPU µs/call from /proc over the measured period: the gateway process (for SQLite this includes the Store) and redis-server.',
    'Gateway on CPU 0; backend, load generator and redis-server elsewhere.',
  );
  return section;
}
