import { appendFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addedCost } from './1-added-cost.ts';
import { tokenValidation } from './2-token-validation.ts';
import { streams } from './3-streams.ts';
import { stateGrowth } from './4-state-growth.ts';
import { signIn } from './5-sign-in.ts';
import type { BenchContext } from './lib/context.ts';
import { goalsTable } from './lib/goals.ts';
import { describeMachine, machineLine } from './lib/machine.ts';
import { renderSection, type Section } from './lib/report.ts';

/**
 * npm run bench [-- --quick] [--only=1,3] [--results=FILE] [--json=FILE] [--profile=DIR]
 * Runs the benchmarks of issue 6 in order, prints each table, and appends the run to
 * bench/RESULTS.md (or --results). --json writes the sections as JSON (used by the test).
 */
const BENCHMARKS: Record<number, (ctx: BenchContext) => Promise<Section>> = {
  1: addedCost,
  2: tokenValidation,
  3: streams,
  4: stateGrowth,
  5: signIn,
};

const argv = process.argv.slice(2);
const flag = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = argv.includes('--quick');
const only = (flag('only') ?? '1,2,3,4,5').split(',').map(Number);
const resultsFile = flag('results') ?? fileURLToPath(new URL('./RESULTS.md', import.meta.url));
const profileDir = flag('profile');
const tmp = mkdtempSync(join(tmpdir(), 'mcpgw-bench-'));
if (profileDir) mkdirSync(profileDir, { recursive: true });

const ctx: BenchContext = {
  quick,
  tmp,
  gatewayNodeArgs: ['--expose-gc', ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
  log: (message) => console.log(message),
};

const machine = describeMachine();
const startedAt = new Date();
console.log(`mcp-entra-gateway benchmarks (${quick ? 'quick' : 'full'}) on ${machineLine(machine)}`);
const sections: Section[] = [];
let failed = false;
try {
  for (const id of only) {
    const bench = BENCHMARKS[id];
    if (!bench) throw new Error(`no benchmark ${id}`);
    const t0 = performance.now();
    console.log(`\n== benchmark ${id} ==`);
    try {
      const section = await bench(ctx);
      section.notes.push(`took ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      sections.push(section);
      console.log(`\n${renderSection(section)}`);
    } catch (error) {
      failed = true;
      console.error(`benchmark ${id} failed:`, error);
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const elapsedSeconds = (Date.now() - startedAt.getTime()) / 1000;
const header = [
  `## ${startedAt.toISOString()} — ${quick ? 'quick' : 'full-size'} run of ${only.length === 5 ? 'all five benchmarks' : `benchmark ${only.join(', ')}`} (${elapsedSeconds.toFixed(0)} s)`,
  '',
  `Machine: ${machineLine(machine)}.`,
  '',
].join('\n');
const goals = only.length === 5 ? `### Goals\n\n${goalsTable(sections)}\n` : '';
const text = `${header}\n${goals}\n${sections.map(renderSection).join('\n')}\n`;
if (!existsSync(resultsFile)) writeFileSync(resultsFile, '# Benchmark results\n\nAppended by `npm run bench`; see bench/README.md.\n\n');
appendFileSync(resultsFile, text);
const jsonFile = flag('json');
if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ machine, quick, sections }, null, 2));
if (goals) console.log(`\n${goals}`);
console.log(`appended to ${resultsFile} (${elapsedSeconds.toFixed(0)} s)`);
process.exit(failed ? 1 : 0);
