/**
 * `npm run test:unit`: every test file, in two `node --test` runs. Options given to this script go to
 * both (`npm run test:unit -- --test-name-pattern=quota`); file paths run just those files.
 *
 * 1. Two files at a time. The quick benchmark starts first: it is the longest file by far and asserts
 *    no speed, so the other worker goes through the rest meanwhile; then the slowest files, then the
 *    rest by name. Files cannot meet: each starts its own servers, on listen(0) or on ports that no
 *    other worker is given (ports.ts), and keeps its data in its own mkdtemp directory.
 * 2. One at a time: the files that assert a time bound (a timeout fires within N ms, or work must
 *    finish inside a short configured timeout), which a CPU shared with another test file can break
 *    although the code is right. A new file with such a bound belongs in SERIAL, with its reason.
 *
 * Child processes share a module compile cache (NODE_COMPILE_CACHE), so each of the suite's many
 * Node processes does not strip and compile the same TypeScript and dependencies again.
 */
import { spawn } from 'node:child_process';
import { existsSync, globSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';

const ROOT = join(import.meta.dirname, '../..');
const PATTERNS = ['src/**/*.test.ts', 'servers/**/*.test.ts', 'test/**/*.test.ts'];
const CONCURRENCY = 2;

/** Run alone, after the rest, and why. */
const SERIAL: Record<string, string> = {
  'servers/snippets/http.test.ts': 'three sessions are opened within a 300 ms idle timeout',
  'src/proxy/forward.test.ts': 'a backend must answer within a 150 ms headers timeout',
  'test/contract/store.test.ts': 'Redis frozen: every call fails within 1000 ms + 300 ms',
  'test/integration/oauth-cimd.test.ts': 'a metadata document over TLS must be fetched within a 500 ms timeout',
  'test/integration/proxy-failures.test.ts': 'a backend timeout is answered within 2 s',
  'test/integration/proxy-modern.test.ts': 'a stream ends within 1 s of shutdown',
  'test/integration/proxy-sdk-clients.test.ts': 'progress notifications must arrive spread ≥ 400 ms (a stalled client bunches them)',
  'test/integration/request-timeouts.test.ts': 'connections close within 400 ms of node:http timeouts',
  'test/scale/faults.test.ts': 'Redis frozen: 503 within 1300 ms; a stream ends within 1 s of a kill',
  'test/scale/replicas.test.ts': 'every request is answered within 1.5 s through a Redis restart',
};

/** Started first in phase 1, longest first, so that both workers finish near the same time. */
const FIRST = [
  'test/bench/quick.test.ts',
  'test/integration/conformance-fixture.test.ts',
  'test/integration/proxy-conformance.test.ts',
  'test/integration/proxy-v2-clients.test.ts',
  'test/browser/consent.test.ts',
  'test/e2e/cli.test.ts',
  'test/integration/audit.test.ts',
  'test/integration/audit-mcp.test.ts',
  'test/browser/step-up.test.ts',
  'test/e2e/package.test.ts',
  'test/e2e/policy-explain.test.ts',
];

const all = globSync(PATTERNS, { cwd: ROOT }).sort();
for (const file of [...Object.keys(SERIAL), ...FIRST]) {
  if (!all.includes(file)) throw new Error(`test/support/run-suite.ts names ${file}, which is not a test file`);
}
const chosen = process.argv.slice(2).filter((arg) => !arg.startsWith('-')).map((arg) => relative(ROOT, resolve(arg)));
const files = chosen.length > 0 ? chosen : all;
const parallel = [...FIRST.filter((file) => files.includes(file)), ...files.filter((file) => !FIRST.includes(file) && !(file in SERIAL))];
const serial = files.filter((file) => file in SERIAL);

const passThrough = process.argv.slice(2).filter((arg) => arg.startsWith('-'));
const ownReporter = passThrough.some((arg) => arg.startsWith('--test-reporter'));
const reports = mkdtempSync(join(tmpdir(), 'mcpgw-test-run-'));
const env = { ...process.env, NODE_COMPILE_CACHE: process.env['NODE_COMPILE_CACHE'] ?? join(tmpdir(), 'node-compile-cache') };
const startedAt = Date.now();
let failed = false;
try {
  for (const [phase, concurrency, group] of [
    [`${parallel.length} files, ${CONCURRENCY} at a time`, CONCURRENCY, parallel],
    [`${serial.length} files with time bounds, one at a time`, 1, serial],
  ] as const) {
    if (group.length === 0) continue;
    console.log(`# ${phase}`);
    const reporters = ownReporter
      ? []
      : ['--test-reporter=spec', '--test-reporter-destination=stdout', `--test-reporter=${join(import.meta.dirname, 'file-durations-reporter.ts')}`, `--test-reporter-destination=${join(reports, `${concurrency}.jsonl`)}`];
    const child = spawn(process.execPath, ['--test', `--test-concurrency=${concurrency}`, ...reporters, ...passThrough, ...group], { cwd: ROOT, env, stdio: 'inherit' });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    if (code !== 0) failed = true;
  }
  if (!ownReporter) printSlowest();
} finally {
  rmSync(reports, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;

/** The slowest files (time in their tests, start-up not counted) and the wall time, so that a file that grows slow is seen. */
function printSlowest(): void {
  const durations = ['2.jsonl', '1.jsonl']
    .map((name) => join(reports, name))
    .filter((file) => existsSync(file))
    .flatMap((file) => readFileSync(file, 'utf8').split('\n').filter(Boolean))
    .map((line) => JSON.parse(line) as { file: string; ms: number })
    .sort((a, b) => b.ms - a.ms);
  console.log(`# slowest files (time in tests): ${durations.slice(0, 8).map((d) => `${relative(ROOT, d.file)} ${(d.ms / 1000).toFixed(1)} s`).join(', ')}`);
  console.log(`# wall time ${((Date.now() - startedAt) / 1000).toFixed(0)} s (serial files: ${Object.keys(SERIAL).length}; see test/support/run-suite.ts)`);
}
