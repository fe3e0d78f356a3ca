import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MCP_HEADERS, TOOLS_CALL_BODY } from './lib/context.ts';
import { freePort } from '../test/support/ports.ts';
import { HELLO_CALL_BODY, openSession, startBackend } from './lib/mcp-session.ts';
import { startWorker } from './lib/procs.ts';
import { startOtlpSink } from './lib/otlp-sink.ts';
import { summarise } from './lib/profile-summary.ts';

/**
 * npm run bench:profile [-- --backend=snippets|minimal --connections=16 --seconds=10 --out=DIR --audit --trace=1|0.1 --policy --interval=US]
 * Benchmark 1's gateway path alone (in front of the snippets server by default, or the minimal
 * JSON backend), with the gateway under --cpu-prof; `--audit` turns the audit trail on (file sink,
 * arguments `hash`) and `--trace=RATIO` tracing (OTLP to a loopback sink that discards, sampled at
 * RATIO), as benchmark 1's cost-of-features variants do; `--policy` puts the dev sample policy (src/dev.ts
 * rules and quotas) on the backend, as its policy variant; `--interval` is the profile's sampling interval
 * in µs (V8's default 1000; a finer one resolves a path of a few µs per call); prints the gateway's PID while it loads (for
 * `strace -c -f -p PID`) and then where its CPU goes
 * (self and inclusive time, startup excluded by a warm-up before the profile starts counting
 * is not possible with --cpu-prof, so the run is long enough for startup to be a small share).
 */
const argv = process.argv.slice(2);
const flag = (name: string, fallback: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const kind = flag('backend', 'snippets');
const connections = Number(flag('connections', '16'));
const seconds = Number(flag('seconds', '10'));
const out = flag('out', mkdtempSync(join(tmpdir(), 'mcpgw-profile-')));
const tmp = mkdtempSync(join(tmpdir(), 'mcpgw-profile-db-'));
const audit = argv.includes('--audit');
const policy = argv.includes('--policy');
const interval = flag('interval', '');
const traceRatio = flag('trace', '');
mkdirSync(out, { recursive: true });

const gatewayPort = await freePort();
const gatewayOrigin = `http://127.0.0.1:${gatewayPort}`;
const backend = await startBackend(kind === 'minimal' ? 'minimal' : 'snippets', tmp, gatewayOrigin);
const otlp = traceRatio ? await startOtlpSink() : undefined;
const gateway = await startWorker('gateway', {
  role: 'server',
  nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${out}`, ...(interval ? [`--cpu-prof-interval=${interval}`] : [])],
  args: {
    backendUrl: backend.ready['url'],
    port: gatewayPort,
    store: { kind: 'sqlite', path: join(tmp, 'gateway.db') },
    ...(audit ? { auditFile: join(tmp, 'audit.jsonl') } : {}),
    ...(otlp ? { telemetry: true } : {}),
    policy,
  },
  // As benchmark 1's tracing variants (1-added-cost.ts featureVariants).
  ...(otlp
    ? {
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
          OTEL_TRACES_EXPORTER: 'otlp',
          OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
          OTEL_TRACES_SAMPLER_ARG: traceRatio,
          OTEL_SDK_DISABLED: 'false',
          APPLICATIONINSIGHTS_CONNECTION_STRING: '',
        },
      }
    : {}),
});
const load = await startWorker('load', { role: 'client' });
const headers: Record<string, string> = { authorization: `Bearer ${String(gateway.ready['token'])}` };
if (kind === 'snippets') headers['mcp-session-id'] = await openSession(String(gateway.ready['mcpUrl']), headers);
const features = [policy ? 'policy' : '', audit ? 'audit' : '', otlp ? `tracing ${traceRatio}` : ''].filter(Boolean).join(', ') || 'features off';
console.log(`gateway PID ${gateway.pid} (${kind} backend, ${features}); loading for ${seconds + 2} s`);
const result = await load.call({
  type: 'run',
  url: gateway.ready['mcpUrl'],
  connections,
  durationSeconds: seconds,
  warmupSeconds: 2,
  headers: { ...MCP_HEADERS, ...headers },
  body: kind === 'snippets' ? HELLO_CALL_BODY : TOOLS_CALL_BODY,
  uniqueIds: kind === 'snippets',
  cpuPids: { gateway: [gateway.pid] },
});
await load.stop();
await gateway.stop();
await backend.stop();
await otlp?.close();
rmSync(tmp, { recursive: true, force: true });
console.log(`gateway (${kind} backend) at ${connections} connections: ${Math.round(Number(result['rps']))} req/s, p50 ${Number(result['p50']).toFixed(3)} ms, p99 ${Number(result['p99']).toFixed(3)} ms, gateway CPU ${Number((result['cpuUsPerRequest'] as Record<string, number>)['gateway']).toFixed(1)} µs/call`);
const file = readdirSync(out).filter((f) => f.endsWith('.cpuprofile')).sort().pop()!;
console.log(`profile: ${join(out, file)}\n`);
console.log(summarise(JSON.parse(readFileSync(join(out, file), 'utf8')), 40));
