import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { type BenchContext, type LoadResult, MCP_HEADERS, TOOLS_CALL_BODY } from './lib/context.ts';
import { findNginx, NGINX_MISSING, type RunningNginx, startNginx } from './lib/nginx.ts';
import { processTree, startWorker, type Worker } from './lib/procs.ts';
import { fmtInt, round, type Section } from './lib/report.ts';

/**
 * Benchmark 1: the added cost per call. One trivial backend; the same tools/call through four
 * paths (direct; nginx; a bare Node proxy, the floor of any Node data plane; the gateway with a
 * real token), interleaved round by round so drift on a shared machine hits all alike, at 1, 16
 * and 64 connections. Besides req/s and latency, each path's CPU time per call (from /proc):
 * what the proxy itself spends, whatever else shares its core.
 */
export async function addedCost(ctx: BenchContext): Promise<Section> {
  const section: Section = {
    id: 1,
    title: 'Added cost per call (tools/call, JSON response mode)',
    columns: ['connections', 'path', 'req/s', 'p50 ms', 'p99 ms', 'proxy CPU µs/call', 'backend CPU µs/call', 'errors'],
    rows: [],
    notes: [],
    figures: {},
  };
  const connectionLevels = [1, 16, 64];
  const rounds = ctx.quick ? 1 : 2;
  const durationSeconds = ctx.quick ? 1 : 5;
  const warmupSeconds = ctx.quick ? 0.5 : 1;

  let nginxBinary = findNginx();
  if (!nginxBinary && !ctx.quick) nginxBinary = tryInstallNginx(ctx);
  if (!nginxBinary) {
    ctx.log(`benchmark 1: skipping nginx: ${NGINX_MISSING}`);
    section.notes.push(`nginx path skipped: ${NGINX_MISSING}`);
  }

  const workers: Worker[] = [];
  let nginx: RunningNginx | undefined;
  try {
    const backend = await startWorker('backend', { role: 'server', maxFds: 65_536 });
    workers.push(backend);
    const backendUrl = String(backend.ready['url']);
    const gateway = await startWorker('gateway', {
      role: 'server',
      nodeArgs: ctx.gatewayNodeArgs,
      args: { backendUrl, store: { kind: 'sqlite', path: join(ctx.tmp, 'b1-gateway.db') } },
    });
    workers.push(gateway);
    const nodeProxy = await startWorker('node-proxy', { role: 'server', args: { backendUrl: `${backendUrl}/mcp` } });
    workers.push(nodeProxy);
    if (nginxBinary) nginx = await startNginx(nginxBinary, backendUrl, join(ctx.tmp, 'nginx'));
    const load = await startWorker('load', { role: 'client', maxFds: 65_536 });
    workers.push(load);

    const token = String(gateway.ready['token']);
    const targets: { name: string; url: string; proxyPids: number[] }[] = [
      { name: 'direct', url: `${backendUrl}/mcp`, proxyPids: [] },
      ...(nginx ? [{ name: 'nginx', url: `${nginx.url}/mcp`, proxyPids: processTree(nginx.pid) }] : []),
      { name: 'node proxy', url: String(nodeProxy.ready['url']), proxyPids: [nodeProxy.pid] },
      { name: 'gateway', url: String(gateway.ready['mcpUrl']), proxyPids: [gateway.pid] },
    ];
    const results = new Map<string, LoadResult[]>();
    for (const connections of connectionLevels) {
      for (let r = 0; r < rounds; r++) {
        // Rotate the order each round so no path always runs first (or right after another).
        const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
        for (const target of order) {
          const result = await load.call<LoadResult>({
            type: 'run',
            url: target.url,
            connections,
            durationSeconds,
            warmupSeconds,
            method: 'POST',
            headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
            body: TOOLS_CALL_BODY,
            cpuPids: { proxy: target.proxyPids, backend: [backend.pid] },
          });
          const key = `${connections}|${target.name}`;
          results.set(key, [...(results.get(key) ?? []), result]);
          ctx.log(
            `  ${connections} conn ${target.name}: ${fmtInt(result.rps)} req/s p50 ${round(result.p50, 3)} ms p99 ${round(result.p99, 3)} ms, proxy ${round(result.cpuUsPerRequest['proxy']!, 1)} µs CPU/call`,
          );
        }
      }
    }

    const mean = (list: LoadResult[], pick: (r: LoadResult) => number) => list.reduce((s, r) => s + pick(r), 0) / list.length;
    const summary: (string | number)[][] = [];
    for (const connections of connectionLevels) {
      const agg = new Map<string, LoadResult>();
      for (const target of targets) {
        const list = results.get(`${connections}|${target.name}`)!;
        const row: LoadResult = {
          requests: list.reduce((s, r) => s + r.requests, 0),
          rps: mean(list, (r) => r.rps),
          p50: mean(list, (r) => r.p50),
          p99: mean(list, (r) => r.p99),
          errors: list.reduce((s, r) => s + r.errors + r.non2xx, 0),
          non2xx: 0,
          cpuUsPerRequest: {
            proxy: mean(list, (r) => r.cpuUsPerRequest['proxy']!),
            backend: mean(list, (r) => r.cpuUsPerRequest['backend']!),
          },
        };
        agg.set(target.name, row);
        section.rows.push([
          connections,
          target.name,
          fmtInt(row.rps),
          round(row.p50, 3),
          round(row.p99, 3),
          target.proxyPids.length > 0 ? round(row.cpuUsPerRequest['proxy']!, 1) : '–',
          round(row.cpuUsPerRequest['backend']!, 1),
          row.errors,
        ]);
      }
      const direct = agg.get('direct')!;
      const gw = agg.get('gateway')!;
      const ng = agg.get('nginx');
      const bare = agg.get('node proxy')!;
      section.figures[`gatewayVsNodeProxy${connections}`] = gw.rps / bare.rps;
      section.figures[`gatewayCpuUs${connections}`] = gw.cpuUsPerRequest['proxy']!;
      section.figures[`nodeProxyCpuUs${connections}`] = bare.cpuUsPerRequest['proxy']!;
      if (ng) section.figures[`nginxCpuUs${connections}`] = ng.cpuUsPerRequest['proxy']!;
      const vsNginx = ng ? gw.rps / ng.rps : Number.NaN;
      const vsDirect = gw.rps / direct.rps;
      const addedP50 = gw.p50 - direct.p50;
      const addedP99 = gw.p99 - direct.p99;
      section.figures[`gatewayVsNginx${connections}`] = vsNginx;
      section.figures[`gatewayVsDirect${connections}`] = vsDirect;
      section.figures[`addedP50_${connections}`] = addedP50;
      section.figures[`addedP99_${connections}`] = addedP99;
      if (ng) {
        section.figures[`nginxAddedP50_${connections}`] = ng.p50 - direct.p50;
        section.figures[`nginxAddedP99_${connections}`] = ng.p99 - direct.p99;
      }
      summary.push([
        connections,
        ng ? round(vsNginx) : 'n/a',
        round(vsDirect),
        round(addedP50, 3),
        round(addedP99, 3),
        ng ? round(ng.p50 - direct.p50, 3) : 'n/a',
        ng ? round(ng.p99 - direct.p99, 3) : 'n/a',
        round(gw.rps / bare.rps),
        `${round(gw.cpuUsPerRequest['proxy']!, 1)} / ${round(bare.cpuUsPerRequest['proxy']!, 1)} / ${ng ? round(ng.cpuUsPerRequest['proxy']!, 1) : 'n/a'}`,
      ]);
    }
    section.notes.push(
      `${rounds} interleaved round(s) of ${warmupSeconds} s warm-up (discarded) + ${durationSeconds} s per path and level; figures are means over rounds.`,
      'CPU µs/call: user + system CPU time of the proxy process(es) (nginx: master and worker; gateway; node proxy) and of the backend over the measured period, from /proc, divided by the calls answered. Unlike req/s it does not depend on how the shared core is split.',
      '"node proxy" is bench/procs/node-proxy.ts: node:http server + undici pool, no auth or header policy: the cost of Node\'s HTTP stack alone, the floor under any Node gateway.',
      'Ratios and added latency (gateway minus direct; nginx minus direct for comparison):',
    );
    section.extra = [
      '| connections | gateway/nginx req/s | gateway/direct req/s | gateway added p50 ms | gateway added p99 ms | nginx added p50 ms | nginx added p99 ms | gateway/node proxy req/s | CPU µs per call: gateway / node proxy / nginx |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...summary.map((cells) => `| ${cells.join(' | ')} |`),
    ].join('\n');
  } finally {
    await nginx?.stop();
    for (const worker of workers.reverse()) await worker.stop();
  }
  return section;
}

/** On a fresh Debian/Ubuntu machine run as root, install nginx (the issue: "installs nginx via apt if missing"). */
function tryInstallNginx(ctx: BenchContext): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    ctx.log('benchmark 1: nginx missing; installing with apt-get (nginx-light)…');
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'nginx-light'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } catch {
    return undefined;
  }
  return findNginx();
}
