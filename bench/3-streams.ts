import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchContext } from './lib/context.ts';
import { canRaiseFdLimit, hardFdLimit, startWorker, type Worker } from './lib/procs.ts';
import { fmtInt, round, type Section } from './lib/report.ts';

/** File descriptors the gateway holds besides its streams (listeners, SQLite, dev IdP, stdio). */
const GATEWAY_FD_RESERVE = 200;

/**
 * Benchmark 3: N idle SSE streams held through the gateway (Streamable HTTP GET /mcp, legacy
 * GET /mcp/sse): gateway RSS per stream (after full GCs, before and after opening), and the time
 * for one backend notification to reach all N clients.
 */
export async function streams(ctx: BenchContext): Promise<Section> {
  const section: Section = {
    id: 3,
    title: 'Idle SSE streams through the gateway',
    columns: ['transport', 'streams', 'open time s', 'gateway RSS before MiB', 'after MiB', 'KiB per stream', 'fan-out to all ms (median of 3)', 'max ms'],
    rows: [],
    notes: [],
    figures: {},
  };
  // Each stream holds two gateway descriptors: the client's socket and the backend's.
  const hard = hardFdLimit();
  const cap = Math.floor((hard - GATEWAY_FD_RESERVE) / 2);
  const wanted = ctx.quick ? [100] : [1000, 10_000];
  const levels = [...new Set(wanted.map((n) => Math.min(n, cap)))];
  if (!ctx.quick && cap < 10_000) {
    section.notes.push(
      `10,000 streams need ≥ ${fmtInt(20_000 + GATEWAY_FD_RESERVE)} descriptors in the gateway (one client socket + one backend socket per stream); the hard limit here is ${hard} (\`ulimit -Hn\`) and ${canRaiseFdLimit() ? 'could be raised but was not' : 'cannot be raised: the process lacks CAP_SYS_RESOURCE (sandboxed VM/container)'}, so the top level is ${fmtInt(cap)} streams.`,
    );
  }
  const transports = [
    { name: 'GET /mcp', path: '/mcp', ready: ': open' },
    { name: 'legacy /mcp/sse', path: '/mcp/sse', ready: 'event: endpoint' },
  ];
  const workers: Worker[] = [];
  try {
    const backend = await startWorker('backend', { role: 'client', maxFds: 65_536 });
    workers.push(backend);
    const clients = await startWorker('streams', { role: 'client', maxFds: 65_536 });
    workers.push(clients);
    for (const transport of transports) {
      for (const n of levels) {
        const gateway = await startWorker('gateway', {
          role: 'server',
          maxFds: 65_536,
          nodeArgs: ctx.gatewayNodeArgs,
          args: { backendUrl: backend.ready['url'], store: { kind: 'sqlite', path: join(ctx.tmp, `b3-${n}-${transport.path.length}.db`) } },
        });
        try {
          const before = await gateway.call<{ rss: number }>({ type: 'gc' });
          const opened = await clients.call<{ open: number; ms: number }>({
            type: 'open',
            url: gateway.ready['url'],
            path: transport.path,
            token: gateway.ready['token'],
            ready: transport.ready,
            n,
          });
          await sleep(200);
          const after = await gateway.call<{ rss: number }>({ type: 'gc' });
          const perStreamKiB = (after.rss - before.rss) / n / 1024;
          const fanouts: number[] = [];
          for (let i = 0; i < 3; i++) {
            const marker = `fanout-${n}-${i}-${Date.now()}`;
            const arrived = clients.call<{ lastArrival: string }>({ type: 'expect', marker });
            await clients.call({ type: 'armed' }); // IPC is ordered: `expect` is in place now
            const sentAt = process.hrtime.bigint();
            await backend.call({ type: 'broadcast', marker });
            const { lastArrival } = await arrived;
            fanouts.push(Number(BigInt(lastArrival) - sentAt) / 1e6);
          }
          fanouts.sort((a, b) => a - b);
          await clients.call({ type: 'close' });
          section.rows.push([
            transport.name,
            fmtInt(n),
            round(opened.ms / 1000, 1),
            round(before.rss / 2 ** 20, 1),
            round(after.rss / 2 ** 20, 1),
            round(perStreamKiB, 1),
            round(fanouts[1]!, 1),
            round(fanouts[2]!, 1),
          ]);
          const key = transport.path === '/mcp' ? 'streamable' : 'legacy';
          section.figures[`${key}KiBPerStream`] = perStreamKiB;
          section.figures[`${key}FanoutMs`] = fanouts[1]!;
          section.figures[`${key}Streams`] = n;
          ctx.log(`  ${transport.name} ${n}: ${round(perStreamKiB, 1)} KiB/stream, fan-out ${round(fanouts[1]!, 1)} ms`);
        } finally {
          await gateway.stop();
        }
      }
    }
  } finally {
    for (const worker of workers.reverse()) await worker.stop();
  }
  section.notes.push(
    'Gateway on CPU 0; backend and the stream clients (raw sockets) on CPU 1. RSS from process.memoryUsage() after three full GCs (--expose-gc), before opening and after all streams are open.',
    'Fan-out: from the backend being told to write one notification to each of its N streams until the last client has read it (monotonic clock shared by the processes).',
  );
  return section;
}
