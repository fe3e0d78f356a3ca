import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { type BenchContext, type LoadResult, MCP_HEADERS, TOOLS_CALL_BODY } from './lib/context.ts';
import { freePort } from '../test/support/ports.ts';
import { HELLO_CALL_BODY, openSession, SNIPPETS_KEY, startBackend } from './lib/mcp-session.ts';
import { findNginx, NGINX_MISSING, type RunningNginx, startNginx } from './lib/nginx.ts';
import { processTree, startWorker, type Worker } from './lib/procs.ts';
import { fmtInt, round, type Section } from './lib/report.ts';

/** Benchmark 1's backends: the snippets server (the row that counts) and the minimal JSON one. */
type BackendKind = 'snippets' | 'minimal';

/**
 * Benchmark 1: the added cost per call, in two rows. First a real MCP server (the snippets
 * server: SDK McpServer, a session, SSE answers, x-functions-key and identity assertion checked
 * on every call), then a trivial JSON backend. In each, the same tools/call through four paths
 * (direct; nginx; a bare Node proxy, the floor of any Node data plane; the gateway with a real
 * token), interleaved round by round so drift on a shared machine hits all alike, at 1, 16 and
 * 64 connections. Besides req/s and latency, each path's CPU time per call (from /proc): what
 * the proxy itself spends, whatever else shares its core.
 */
export async function addedCost(ctx: BenchContext): Promise<Section> {
  const section: Section = {
    id: 1,
    title: 'Added cost per call (tools/call: snippets server with SSE answers; minimal JSON backend)',
    columns: ['backend', 'connections', 'path', 'req/s', 'p50 ms', 'p99 ms', 'proxy CPU µs/call', 'backend CPU µs/call', 'errors'],
    rows: [],
    notes: [],
    figures: {},
  };
  let nginxBinary = findNginx();
  if (!nginxBinary && !ctx.quick) nginxBinary = tryInstallNginx(ctx);
  if (!nginxBinary) {
    ctx.log(`benchmark 1: skipping nginx: ${NGINX_MISSING}`);
    section.notes.push(`nginx path skipped: ${NGINX_MISSING}`);
  }
  // Both rows' processes start together (startup dominates quick mode), then each row is measured alone.
  const rows = await Promise.allSettled((['snippets', 'minimal'] as const).map((kind) => startRow(ctx, kind, nginxBinary)));
  const summaries: string[] = [];
  try {
    for (const row of rows) {
      if (row.status === 'rejected') throw row.reason;
      summaries.push(...(await measureRow(ctx, section, row.value)));
    }
  } finally {
    for (const row of rows) if (row.status === 'fulfilled') await row.value.stop();
  }
  const rounds = ctx.quick ? 1 : 2;
  section.notes.push(
    `${rounds} interleaved round(s) of ${ctx.quick ? 0.3 : 1} s warm-up (discarded) + ${ctx.quick ? 0.7 : 5} s per path and level; figures are means over rounds.`,
    'snippets: servers/snippets (official SDK McpServer, folder storage) answering `hello_mcp` as an SSE stream in one Streamable HTTP session per path (JSON-RPC ids unique per call); it checks x-functions-key (injected by nginx, the node proxy and the gateway) and verifies the identity assertion (ES256) on every call (direct, nginx and node proxy send one the gateway signed). minimal: bench/procs/backend.ts, one fixed JSON answer, no session.',
    'CPU µs/call: user + system CPU time of the proxy process(es) (nginx: master and worker; gateway; node proxy) and of the backend over the measured period, from /proc, divided by the calls answered. Unlike req/s it does not depend on how the shared core is split.',
    '"node proxy" is bench/procs/node-proxy.ts: node:http server + undici Pool#dispatch (the gateway\'s client), no auth or header policy: the cost of Node\'s HTTP stack alone, the floor under any Node gateway.',
    'Ratios and added latency (gateway minus direct; nginx minus direct for comparison):',
  );
  // The policy table (measurePolicy), when the real row ran, follows the ratios.
  const policyTable = section.extra;
  section.extra = [
    '| backend | connections | gateway/nginx req/s | gateway/direct req/s | gateway added p50 ms | gateway added p99 ms | nginx added p50 ms | nginx added p99 ms | gateway/node proxy req/s | CPU µs per call: gateway / node proxy / nginx | gateway CPU / nginx CPU |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...summaries,
    ...(policyTable ? ['', policyTable] : []),
  ].join('\n');
  return section;
}

interface Target {
  name: string;
  url: string;
  proxyPids: number[];
  headers: Record<string, string>;
}

interface Row {
  kind: BackendKind;
  backend: Worker;
  load: Worker;
  targets: Target[];
  /** The real row only: a second gateway with the dev sample policy, before the same snippets server. */
  policy?: { target: Target };
  stop(): Promise<void>;
}

/** One backend's row of processes: the backend, the gateway, the node proxy, nginx, a load generator; sessions opened. */
async function startRow(ctx: BenchContext, kind: BackendKind, nginxBinary: string | undefined): Promise<Row> {
  const workers: Worker[] = [];
  let nginx: RunningNginx | undefined;
  const stop = async () => {
    await nginx?.stop();
    for (const worker of workers.reverse()) await worker.stop();
  };
  try {
    const gatewayPort = await freePort();
    const gatewayOrigin = `http://127.0.0.1:${gatewayPort}`;
    const backend = await startBackend(kind, join(ctx.tmp, `b1-${kind}`), gatewayOrigin);
    workers.push(backend);
    const backendUrl = String(backend.ready['url']);
    const gateway = await startWorker('gateway', {
      role: 'server',
      nodeArgs: ctx.gatewayNodeArgs,
      args: { backendUrl, port: gatewayPort, store: { kind: 'sqlite', path: join(ctx.tmp, `b1-${kind}-gateway.db`) } },
    });
    workers.push(gateway);
    const inject: Record<string, string> = kind === 'snippets' ? { 'x-functions-key': SNIPPETS_KEY } : {};
    const nodeProxy = await startWorker('node-proxy', { role: 'server', args: { backendUrl: `${backendUrl}/mcp`, setHeaders: inject } });
    workers.push(nodeProxy);
    if (nginxBinary) nginx = await startNginx(nginxBinary, backendUrl, join(ctx.tmp, `nginx-${kind}`), inject);
    const load = await startWorker('load', { role: 'client', maxFds: 65_536 });
    workers.push(load);

    const token = String(gateway.ready['token']);
    // What the client sends on each path: the gateway gets the user's token; the others reach
    // the backend with what the gateway would add (an identity assertion; the key if no proxy injects it).
    const direct: Record<string, string> = { authorization: `Bearer ${token}` };
    if (kind === 'snippets') {
      const { assertion } = await gateway.call<{ assertion: string }>({ type: 'assertion', ttlSeconds: 3600 });
      direct['x-mcp-identity'] = assertion;
    }
    const targets: Row['targets'] = [
      { name: 'direct', url: `${backendUrl}/mcp`, proxyPids: [], headers: { ...direct, ...inject } },
      ...(nginx ? [{ name: 'nginx', url: `${nginx.url}/mcp`, proxyPids: processTree(nginx.pid), headers: { ...direct } }] : []),
      { name: 'node proxy', url: String(nodeProxy.ready['url']), proxyPids: [nodeProxy.pid], headers: { ...direct } },
      { name: 'gateway', url: String(gateway.ready['mcpUrl']), proxyPids: [gateway.pid], headers: { authorization: `Bearer ${token}` } },
    ];
    let policy: Row['policy'];
    if (kind === 'snippets') {
      for (const target of targets) target.headers['mcp-session-id'] = await openSession(target.url, target.headers);
      // The same gateway with the dev sample policy (src/dev.ts; the bench user has its reader
      // role), in front of the SAME snippets server: it stands in for the plain gateway (same
      // issuer and signing key, its own port and Store), so the policy is the only difference.
      const policyGateway = await startWorker('gateway', {
        role: 'server',
        nodeArgs: ctx.gatewayNodeArgs,
        args: {
          backendUrl,
          policy: true,
          store: { kind: 'sqlite', path: join(ctx.tmp, 'b1-policy-gateway.db') },
          as: { publicUrl: gatewayOrigin, signingKey: String(gateway.ready['signingKey']) },
        },
      });
      workers.push(policyGateway);
      const target: Target = {
        name: 'gateway + policy',
        url: String(policyGateway.ready['mcpUrl']),
        proxyPids: [policyGateway.pid],
        headers: { authorization: `Bearer ${String(policyGateway.ready['token'])}` },
      };
      target.headers['mcp-session-id'] = await openSession(target.url, target.headers);
      policy = { target };
    }
    return { kind, backend, load, targets, policy, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** One backend's row: the four paths interleaved, its table rows and figures. */
async function measureRow(ctx: BenchContext, section: Section, { kind, backend, load, targets, policy }: Row): Promise<string[]> {
  // Quick mode keeps the two levels the goals name, briefly (npm test runs it).
  const connectionLevels = ctx.quick ? [16, 64] : [1, 16, 64];
  const rounds = ctx.quick ? 1 : 2;
  const durationSeconds = ctx.quick ? 0.7 : 5;
  const warmupSeconds = ctx.quick ? 0.3 : 1;
  // The minimal row keeps the figure names the goals table has always read; the real row's are prefixed.
  const figure = (name: string) => (kind === 'minimal' ? name : `real${name[0]!.toUpperCase()}${name.slice(1)}`);
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
            headers: { ...MCP_HEADERS, ...target.headers },
            body: kind === 'snippets' ? HELLO_CALL_BODY : TOOLS_CALL_BODY,
            uniqueIds: kind === 'snippets',
            cpuPids: { proxy: target.proxyPids, backend: [backend.pid] },
          });
          const key = `${connections}|${target.name}`;
          results.set(key, [...(results.get(key) ?? []), result]);
          ctx.log(
            `  ${kind} ${connections} conn ${target.name}: ${fmtInt(result.rps)} req/s p50 ${round(result.p50, 3)} ms p99 ${round(result.p99, 3)} ms, proxy ${round(result.cpuUsPerRequest['proxy']!, 1)} µs CPU/call`,
          );
        }
      }
    }

    const mean = (list: LoadResult[], pick: (r: LoadResult) => number) => list.reduce((s, r) => s + pick(r), 0) / list.length;
    const summary: string[] = [];
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
          kind,
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
      const directRow = agg.get('direct')!;
      const gw = agg.get('gateway')!;
      const ng = agg.get('nginx');
      const bare = agg.get('node proxy')!;
      const gwCpu = gw.cpuUsPerRequest['proxy']!;
      const bareCpu = bare.cpuUsPerRequest['proxy']!;
      const ngCpu = ng?.cpuUsPerRequest['proxy'];
      section.figures[figure(`gatewayVsNodeProxy${connections}`)] = gw.rps / bare.rps;
      section.figures[figure(`gatewayCpuUs${connections}`)] = gwCpu;
      section.figures[figure(`nodeProxyCpuUs${connections}`)] = bareCpu;
      section.figures[figure(`gatewayCpuVsNodeProxy${connections}`)] = gwCpu / bareCpu;
      if (ngCpu !== undefined) {
        section.figures[figure(`nginxCpuUs${connections}`)] = ngCpu;
        section.figures[figure(`gatewayCpuVsNginx${connections}`)] = gwCpu / ngCpu;
      }
      const vsNginx = ng ? gw.rps / ng.rps : Number.NaN;
      const vsDirect = gw.rps / directRow.rps;
      const addedP50 = gw.p50 - directRow.p50;
      const addedP99 = gw.p99 - directRow.p99;
      section.figures[figure(`gatewayVsNginx${connections}`)] = vsNginx;
      section.figures[figure(`gatewayVsDirect${connections}`)] = vsDirect;
      section.figures[figure(`addedP50_${connections}`)] = addedP50;
      section.figures[figure(`addedP99_${connections}`)] = addedP99;
      if (ng) {
        section.figures[figure(`nginxAddedP50_${connections}`)] = ng.p50 - directRow.p50;
        section.figures[figure(`nginxAddedP99_${connections}`)] = ng.p99 - directRow.p99;
      }
      const cells = [
        kind,
        connections,
        ng ? round(vsNginx) : 'n/a',
        round(vsDirect),
        round(addedP50, 3),
        round(addedP99, 3),
        ng ? round(ng.p50 - directRow.p50, 3) : 'n/a',
        ng ? round(ng.p99 - directRow.p99, 3) : 'n/a',
        round(gw.rps / bare.rps),
        `${round(gwCpu, 1)} / ${round(bareCpu, 1)} / ${ngCpu !== undefined ? round(ngCpu, 1) : 'n/a'}`,
        ngCpu !== undefined ? round(gwCpu / ngCpu) : 'n/a',
      ];
      summary.push(`| ${cells.join(' | ')} |`);
    }
    if (policy) await measurePolicy(ctx, section, load, backend, { target: targets.find((t) => t.name === 'gateway')! }, policy);
    return summary;
}

const TOOLS_LIST_BODY = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });

/**
 * What the policy adds (issue 12): the gateway without and with the dev sample policy, at 16
 * connections, on the real backend, interleaved: a tools/call (judged before it goes out, its
 * answer relayed as without policy) and a tools/list (its answer's items judged and filtered).
 */
async function measurePolicy(
  ctx: BenchContext,
  section: Section,
  load: Worker,
  backend: Worker,
  plain: { target: Target },
  withPolicy: { target: Target },
): Promise<void> {
  const connections = 16;
  const rounds = ctx.quick ? 1 : 2;
  const runs = [
    { path: plain, body: HELLO_CALL_BODY, call: 'tools/call' },
    { path: withPolicy, body: HELLO_CALL_BODY, call: 'tools/call' },
    { path: plain, body: TOOLS_LIST_BODY, call: 'tools/list' },
    { path: withPolicy, body: TOOLS_LIST_BODY, call: 'tools/list' },
  ];
  const cpu = new Map<number, number[]>();
  const rps = new Map<number, number[]>();
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < runs.length; k++) {
      const i = (k + r) % runs.length;
      const { path, body, call } = runs[i]!;
      const result = await load.call<LoadResult>({
        type: 'run',
        url: path.target.url,
        connections,
        durationSeconds: ctx.quick ? 0.7 : 5,
        // The policy gateway has served nothing yet: its first run warms it up longer (JIT), as the rows before did the other.
        warmupSeconds: r === 0 ? (ctx.quick ? 2 : 5) : ctx.quick ? 0.3 : 1,
        method: 'POST',
        headers: { ...MCP_HEADERS, ...path.target.headers },
        body,
        uniqueIds: true,
        cpuPids: { proxy: path.target.proxyPids, backend: [backend.pid] },
      });
      if (result.errors + result.non2xx > 0) throw new Error(`policy row: ${path.target.name} ${call}: ${result.errors} errors, ${result.non2xx} non-2xx`);
      cpu.set(i, [...(cpu.get(i) ?? []), result.cpuUsPerRequest['proxy']!]);
      rps.set(i, [...(rps.get(i) ?? []), result.rps]);
      ctx.log(`  policy ${call} ${path.target.name}: ${fmtInt(result.rps)} req/s, ${round(result.cpuUsPerRequest['proxy']!, 1)} µs CPU/call`);
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const us = runs.map((_, i) => mean(cpu.get(i)!));
  section.figures['realPolicyAddedCpuUs16'] = us[1]! - us[0]!;
  section.figures['realListFilterAddedCpuUs16'] = us[3]! - us[2]!;
  section.extra = [
    `Policy cost (real backend, ${connections} connections, gateway without and with the dev sample policy of src/dev.ts, both before the same snippets server, interleaved; means over ${rounds} round(s)):`,
    '',
    '| call | gateway req/s | gateway + policy req/s | gateway CPU µs/call | gateway + policy CPU µs/call | added by the policy µs/call |',
    '| --- | --- | --- | --- | --- | --- |',
    ...[0, 2].map((i) =>
      `| ${runs[i]!.call} | ${fmtInt(mean(rps.get(i)!))} | ${fmtInt(mean(rps.get(i + 1)!))} | ${round(us[i]!, 1)} | ${round(us[i + 1]!, 1)} | ${round(us[i + 1]! - us[i]!, 1)} |`,
    ),
  ].join('\n');
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
