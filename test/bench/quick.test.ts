import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Section } from '../../bench/lib/report.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * `npm run bench -- --quick` as the suite runs it, so the benchmarks cannot rot: every benchmark
 * runs and reports its rows. Speed is not asserted (goals live in benchmarks, never in tests); the
 * bound only stops a hang (quick mode takes ~60–90 s alone, more on a loaded machine).
 */
test('bench --quick runs all five benchmarks and reports their rows', { timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-quick-'));
  try {
    const results = join(dir, 'RESULTS.md');
    const json = join(dir, 'results.json');
    const child = spawn(process.execPath, ['bench/run.ts', '--quick', `--results=${results}`, `--json=${json}`], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, output);
    const report = JSON.parse(readFileSync(json, 'utf8')) as { machine: { cores: number; node: string }; sections: Section[] };
    assert.ok(report.machine.cores >= 1);
    assert.match(report.machine.node, /^v\d+/);
    assert.deepEqual(
      report.sections.map((s) => s.id),
      [1, 2, 3, 4, 5],
    );
    const rowsOf = (id: number) => report.sections.find((s) => s.id === id)!.rows;
    const nginx = rowsOf(1).some((row) => row[2] === 'nginx');
    // Benchmark 1: snippets and minimal backends × direct, node proxy, gateway (and nginx unless it is missing) at 16 and 64 connections.
    assert.equal(rowsOf(1).length, 2 * 2 * (nginx ? 4 : 3));
    assert.deepEqual([...new Set(rowsOf(1).map((row) => row[0]))], ['snippets', 'minimal']);
    if (!nginx) assert.match(output, /skipping nginx: nginx is not installed/);
    // Benchmark 1's cost of features: the plain gateway, five variants and an A/A control before the same snippets server.
    const figures = report.sections.find((s) => s.id === 1)!.figures;
    const variants = ['Policy', 'Audit', 'Trace100', 'Trace10', 'AuditTrace100', 'Control'];
    for (const name of ['realPlainCpuUs16', ...variants.flatMap((v) => [`real${v}CpuUs16`, `real${v}AddedCpuUs16`, `real${v}CpuVsPlain16`])]) {
      assert.ok(Number.isFinite(figures[name]), name);
    }
    // Issue 12: the policy paired on tools/list too (the list filter), and its own CPU per call in process.
    // Net of the control pair (A/A), for the goals.
    for (const name of ['realPolicyNetAddedCpuUs16', 'realAuditNetCpuVsPlain16', 'realTrace10NetCpuVsPlain16']) assert.ok(Number.isFinite(figures[name]), name);
    for (const name of ['realPolicyListAddedCpuUs16', 'policyInProcessCallUs', 'policyInProcessListJsonUs', 'policyInProcessListSseUs']) {
      assert.ok(Number.isFinite(figures[name]), name);
    }
    // The features were on: the tracing variants exported spans, the audit variants wrote records.
    assert.ok(figures['otlpExports']! > 0, 'OTLP exports');
    assert.ok(figures['auditMiB']! > 0, 'audit records');
    const cells = '(?: [^|\\n]+ \\|){6}\\n';
    assert.match(
      readFileSync(results, 'utf8'),
      new RegExp(
        [
          'gateway \\(policy, audit, tracing off\\)',
          'gateway \\+ policy \\(dev sample rules and quotas\\)',
          'gateway \\+ audit \\(file, arguments hash\\)',
          'gateway \\+ tracing, sampled 100%',
          'gateway \\+ tracing, sampled 10%',
          'gateway \\+ audit and tracing 100%',
        ]
          .map((name) => `\\| ${name} \\|${cells}`)
          .join(''),
      ),
    );
    assert.equal(rowsOf(2).length, 4); // SQLite, Redis × cached, uncached
    assert.equal(rowsOf(3).length, 2); // GET /mcp, legacy /mcp/sse
    assert.equal(rowsOf(4).length, 4); // SQLite, Redis × two sizes
    assert.equal(rowsOf(5).length, 2); // SQLite, Redis
    for (const section of report.sections) {
      for (const row of section.rows) for (const cell of row) assert.doesNotMatch(String(cell), /NaN|undefined/, `benchmark ${section.id}: ${row}`);
    }
    const markdown = readFileSync(results, 'utf8');
    assert.match(markdown, /Machine: \d+ cores/);
    assert.match(markdown, /### Goals/);
    // Issue 12's and 14's goals, computed from the cost-of-features table.
    assert.match(markdown, /\| real backend: CPU the dev sample policy adds per tools\/call, 16 connections \(issue 12\) \| ≤ 10 µs \| -?[\d.,]+ µs \| /);
    for (const what of ['audit on', 'tracing sampled 100%', 'tracing sampled 10%', 'audit and tracing 100%']) {
      assert.match(markdown, new RegExp(`\\| real backend: gateway CPU per tools/call with ${what} / all off, 16 connections \\(issue 14\\) \\| ≤ 1\\.15 \\| [\\d.]+× \\| `));
    }
    for (const id of [1, 2, 3, 4, 5]) assert.match(markdown, new RegExp(`### ${id}\\. `));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
