import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { featureVariants } from './1-added-cost.ts';
import { type LoadResult, MCP_HEADERS, TOOLS_CALL_BODY } from './lib/context.ts';
import { HELLO_CALL_BODY, openSession, startBackend } from './lib/mcp-session.ts';
import { startOtlpSink } from './lib/otlp-sink.ts';
import { startWorker, type Worker } from './lib/procs.ts';
import { freePort } from '../test/support/ports.ts';

/**
 * npm run bench:perf-pair -- VARIANT [--warm=40] [--seconds=15] [--top=40] [--connections=16] [--callers] [--stacks=NAME]
 * Where a feature's CPU goes in the gateway as it really runs, against the plain gateway: the two
 * (VARIANT one of benchmark 1's cost-of-features keys: policy, audit, trace100, trace10,
 * auditTrace100, control) before one snippets server, loaded at the same time (16 connections each by default)
 * — or, with VARIANT `floor`, the plain gateway against the node proxy (the floor, bench/procs/node-proxy.ts)
 * before benchmark 1's minimal backend: where the gateway's CPU above the floor goes (issue 11's minimal path)
 * after a warm-up, both sampled by `perf record -e cpu-clock` (a software clock: it works without
 * hardware counters, as on this project's VMs) with V8's perf maps for JIT code. Prints each
 * gateway's CPU per call and, by symbol, µs per call of the variant minus the plain one. Needs
 * `perf` (Debian: linux-perf). A V8 profile (--cpu-prof) of the same path costs the gateway more
 * than the feature does and hides V8's own runtime (inline-cache misses, transitions, GC).
 */
const argv = process.argv.slice(2);
const flag = (name: string, fallback: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const key = argv.find((a) => !a.startsWith('--')) ?? 'audit';
const warmSeconds = Number(flag('warm', '40'));
const seconds = Number(flag('seconds', '15'));
const top = Number(flag('top', '40'));
const connections = Number(flag('connections', '16'));
// --callers: also record call graphs and print which JS functions V8's runtime and builtins ran for (variant side).
const callers = argv.includes('--callers');
// --stacks=NAME: also the JS call chains (innermost first) of the samples with a frame whose name contains NAME.
const stacksOf = flag('stacks', '');
const SAMPLES_PER_SECOND = 4000;

const VARIANT_KEYS = ['policy', 'audit', 'trace100', 'trace10', 'auditTrace100', 'control', 'floor'];
const floor = key === 'floor';
if (!VARIANT_KEYS.includes(key)) throw new Error(`unknown variant ${key}: one of ${VARIANT_KEYS.join(', ')}`);

const tmp = mkdtempSync(join(tmpdir(), 'mcpgw-perf-pair-'));
const workers: Worker[] = [];
const started: { name: string; worker: Worker; url: string; headers: Record<string, string> }[] = [];
const otlp = await startOtlpSink();
try {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const backend = await startBackend(floor ? 'minimal' : 'snippets', tmp, origin);
  workers.push(backend);
  const variant = floor ? { args: {}, env: undefined } : featureVariants(tmp, otlp.url).find((v) => v.key === key)!;
  // As benchmark 1's variants: one signing key and public URL, so the snippets server accepts both.
  const signingKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const base = { backendUrl: String(backend.ready['url']), publicUrl: origin, signingKey };
  if (floor) {
    // The "plain" side is the node proxy; the variant the plain gateway.
    const worker = await startWorker('node-proxy', {
      role: 'server',
      nodeArgs: ['--perf-basic-prof-only-functions'],
      args: { backendUrl: `${base.backendUrl}/mcp` },
    });
    workers.push(worker);
    started.push({ name: 'node proxy', worker, url: String(worker.ready['url']), headers: {} });
  }
  for (const [name, args, env] of (floor
    ? [['gateway', { port }, undefined]]
    : [
        ['plain', { port }, undefined],
        [key, { ...variant.args, port: await freePort() }, variant.env],
      ]) as [string, Record<string, unknown>, Record<string, string> | undefined][]) {
    const worker = await startWorker('gateway', {
      role: 'server',
      nodeArgs: ['--perf-basic-prof-only-functions'],
      args: { ...base, store: { kind: 'sqlite', path: join(tmp, `${name}.db`) }, ...args },
      ...(env ? { env } : {}),
    });
    workers.push(worker);
    const url = String(worker.ready['mcpUrl']);
    const headers: Record<string, string> = { authorization: `Bearer ${String(worker.ready['token'])}` };
    if (!floor) headers['mcp-session-id'] = await openSession(url, headers);
    started.push({ name, worker, url, headers });
  }
  const loads = [await startWorker('load', { role: 'client', maxFds: 65_536 }), await startWorker('load', { role: 'client', maxFds: 65_536 })];
  workers.push(...loads);
  const loadBoth = (duration: number) =>
    Promise.all(
      started.map((gateway, i) =>
        loads[i]!.call<LoadResult>({
          type: 'run',
          url: gateway.url,
          connections,
          durationSeconds: duration,
          warmupSeconds: 0.3,
          method: 'POST',
          headers: { ...MCP_HEADERS, ...gateway.headers },
          body: floor ? TOOLS_CALL_BODY : HELLO_CALL_BODY,
          uniqueIds: !floor,
          cpuPids: { proxy: [gateway.worker.pid] },
        }),
      ),
    );
  const data = join(tmp, 'perf.data');
  console.log(`warming both gateways for ${warmSeconds} s`);
  await loadBoth(warmSeconds);
  const pids = started.map((g) => g.worker.pid).join(',');
  const perf = spawn('perf', ['record', '-q', ...(callers || stacksOf ? ['-g'] : []), '-e', 'cpu-clock', '-F', String(SAMPLES_PER_SECOND), '-o', data, '-p', pids, '--', 'sleep', String(seconds)], {
    stdio: 'inherit',
  });
  const results = await loadBoth(seconds);
  await once(perf, 'exit');
  // The load worker's settling comes before its measured `seconds`, which perf samples.
  const calls = results.map((r) => r.requests);
  for (const [i, gateway] of started.entries()) {
    console.log(`${gateway.name}: ${results[i]!.requests} calls, ${results[i]!.cpuUsPerRequest['proxy']!.toFixed(1)} µs CPU per call (from /proc)`);
  }
  const report = execFileSync('perf', ['report', '-i', data, '--no-children', '--sort', 'pid,sym', '-q', '-n'], { encoding: 'utf8', maxBuffer: 1 << 28 });
  // "  1.68%   376   30872:MainThread   [.] Builtins_LoadIC": samples per (thread, symbol).
  const bySymbol = started.map(() => new Map<string, number>());
  for (const line of report.split('\n')) {
    const match = /^\s*[\d.]+%\s+(\d+)\s+(\d+):\S+\s+\[.\]\s+(.*)$/.exec(line);
    const side = match ? started.findIndex((g) => String(g.worker.pid) === match[2]) : -1;
    if (!match || side < 0) continue;
    const symbol = match[3]!.trim().replace(/\/\S*node_modules\//, '~/');
    bySymbol[side]!.set(symbol, (bySymbol[side]!.get(symbol) ?? 0) + Number(match[1]));
  }
  const usPerCall = (side: number, symbol: string) => ((bySymbol[side]!.get(symbol) ?? 0) * 1e6) / SAMPLES_PER_SECOND / calls[side]!;
  const total = (side: number) => [...bySymbol[side]!.keys()].reduce((sum, symbol) => sum + usPerCall(side, symbol), 0);
  console.log(`main thread, sampled: plain ${total(0).toFixed(1)} µs per call, ${key} ${total(1).toFixed(1)}\n\n  ${key} − plain (plain, ${key}) µs per call`);
  const symbols = [...new Set([...bySymbol[0]!.keys(), ...bySymbol[1]!.keys()])];
  const rows = symbols.map((symbol) => ({ symbol, a: usPerCall(0, symbol), b: usPerCall(1, symbol) })).sort((x, y) => y.b - y.a - (x.b - x.a));
  for (const { symbol, a, b } of rows.slice(0, top)) console.log(`${(b - a).toFixed(2).padStart(7)} (${a.toFixed(2)}, ${b.toFixed(2)})  ${symbol.slice(0, 140)}`);
  const perCall = (side: number, samples: number) => (samples * 1e6) / SAMPLES_PER_SECOND / calls[side]!;
  const samples = callers || stacksOf ? readSamples(data, started.map((g) => g.worker.pid)) : [];
  if (callers) printCallers(samples, perCall);
  if (stacksOf) printStacks(samples, stacksOf, perCall);
} finally {
  for (const worker of workers.reverse()) await worker.stop();
  await otlp.close();
  rmSync(tmp, { recursive: true, force: true });
  // V8 writes its perf maps to /tmp and leaves them.
  for (const gateway of started) rmSync(`/tmp/perf-${gateway.worker.pid}.map`, { force: true });
}

/** One perf sample: its side (index of the pid) and its frames, innermost first. */
interface Sample {
  side: number;
  frames: string[];
}

function readSamples(data: string, pids: number[]): Sample[] {
  const script = execFileSync('perf', ['script', '-i', data, '-F', 'pid,ip,sym'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const samples: Sample[] = [];
  for (const text of script.split('\n\n')) {
    const lines = text.split('\n').filter((line) => line.trim() !== '');
    const side = pids.indexOf(Number(lines[0]?.trim().split(/\s+/)[0]));
    if (side < 0) continue;
    samples.push({ side, frames: lines.slice(1).map((line) => line.trim().replace(/^[0-9a-f]+\s+/, '').replace(/\/\S*node_modules\//, '~/')) });
  }
  return samples;
}

/** Rows of `name (plain, variant)` by µs per call, largest difference first. */
function printDifferences(title: string, counts: Map<string, number>[], usPerCall: (side: number, samples: number) => number): void {
  const names = [...new Set([...counts[0]!.keys(), ...counts[1]!.keys()])];
  const rows = names
    .map((name) => ({ name, a: usPerCall(0, counts[0]!.get(name) ?? 0), b: usPerCall(1, counts[1]!.get(name) ?? 0) }))
    .sort((x, y) => y.b - y.a - (x.b - x.a));
  console.log(`\n  ${title}: variant − plain (plain, variant) µs per call`);
  for (const { name, a, b } of rows.slice(0, top)) console.log(`${(b - a).toFixed(2).padStart(7)} (${a.toFixed(2)}, ${b.toFixed(2)})  ${name.slice(0, 240)}`);
}

/**
 * Samples outside JS (V8 builtins and runtime, native code) charged to the nearest JS function on
 * their stack, per side: the difference says which of our or a library's functions the runtime
 * cost belongs to (an inline-cache miss is charged to the function whose load missed).
 */
function printCallers(samples: Sample[], usPerCall: (side: number, samples: number) => number): void {
  const counts = [new Map<string, number>(), new Map<string, number>()];
  for (const { side, frames } of samples) {
    if (frames[0]?.startsWith('JS:')) continue;
    const caller = frames.find((frame) => frame.startsWith('JS:')) ?? '(no JS frame)';
    counts[side]!.set(caller, (counts[side]!.get(caller) ?? 0) + 1);
  }
  printDifferences('runtime and builtins by nearest JS caller', counts, usPerCall);
}

/** The JS call chains (six frames, innermost first) of the samples with a frame named like `name`. */
function printStacks(samples: Sample[], name: string, usPerCall: (side: number, samples: number) => number): void {
  const counts = [new Map<string, number>(), new Map<string, number>()];
  for (const { side, frames } of samples) {
    if (!frames.some((frame) => frame.includes(name))) continue;
    const chain = frames
      .filter((frame) => frame.startsWith('JS:'))
      .slice(0, 6)
      .map((frame) => frame.replace(/^JS:\S?'?/, '').replace(/ (file:\/\/\/\S*\/|~\/|node:)/, ' '))
      .join(' < ');
    counts[side]!.set(chain, (counts[side]!.get(chain) ?? 0) + 1);
  }
  printDifferences(`JS chains of samples in ${name}`, counts, usPerCall);
}
