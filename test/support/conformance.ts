import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CLI = join(process.cwd(), 'node_modules', '.bin', 'conformance');

/** The requirement sets `conformance server --requirements` knows (frozen per spec revision). */
export type ConformanceRequirements = '2025-11-25' | '2026-07-28';

/** One scenario's outcome: passed when it ran checks and none of them failed. */
export interface ScenarioResult {
  passed: boolean;
  /** `id: description` of each failed check, for assertion messages. */
  failures: string[];
  /** `id` of each check that warned (a SHOULD not met): runs that agree pass the same and warn the same. */
  warnings: string[];
}

/**
 * Runs `@modelcontextprotocol/conformance server --requirements <set>` against `url` and returns
 * scenario → result. A non-zero exit only means some scenario failed; the per-scenario
 * `checks.json` files are the verdict. Reusable for any URL (directly or through the gateway),
 * so a test can compare two runs scenario by scenario.
 */
export async function runConformance(url: string, requirements: ConformanceRequirements): Promise<Map<string, ScenarioResult>> {
  const dir = await mkdtemp(join(tmpdir(), 'conformance-'));
  try {
    await run(process.execPath, [CLI, 'server', '--url', url, '--requirements', requirements, '--timeout', '10000', '-o', dir], {
      timeout: 300_000,
      maxBuffer: 16 * 1024 * 1024,
    }).catch((error: { code?: unknown }) => {
      if (typeof error.code !== 'number') throw error;
    });
    const results = new Map<string, ScenarioResult>();
    for (const entry of await readdir(dir)) {
      const scenario = entry.replace(/^server-/, '').replace(/-\d{4}-\d\d-\d\dT[\d-]+Z$/, '');
      const checks = JSON.parse(await readFile(join(dir, entry, 'checks.json'), 'utf8')) as { id?: string; status: string; description?: string; errorMessage?: string }[];
      const failures = checks.filter((check) => check.status === 'FAILURE').map((check) => `${check.id}: ${check.errorMessage ?? check.description ?? ''}`);
      const warnings = checks.filter((check) => check.status === 'WARNING').map((check) => check.id ?? '');
      results.set(scenario, { passed: checks.length > 0 && failures.length === 0, failures, warnings });
    }
    return results;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The scenarios that passed, sorted. */
export function passingScenarios(results: Map<string, ScenarioResult>): string[] {
  return [...results].filter(([, result]) => result.passed).map(([name]) => name).sort();
}
