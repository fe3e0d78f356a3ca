import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';

/**
 * The installable command: `npm pack` → `npm install -g` into a temporary prefix → the bin runs on
 * this Node (24) and refuses an older one with one line. Installs from npm's local cache
 * (`--prefer-offline`: `npm ci` filled it), so the test needs no network once the project is set up.
 */
const ROOT = new URL('../..', import.meta.url).pathname;
/** The machine's own Node, older than 22.13 on these machines (Debian's 20). */
const SYSTEM_NODE = '/usr/bin/node';

describe('npm pack → npm install -g → mcp-entra-gateway', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-pack-'));
  const prefix = join(dir, 'prefix');
  // npm itself runs on whatever node is first on PATH; put this (24) first.
  const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env['PATH'] ?? ''}` };
  let bin: string;

  before(() => {
    const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT, env, encoding: 'utf8' })) as {
      filename: string;
      files: { path: string }[];
    }[];
    const tarball = join(dir, packed[0]!.filename);
    assert.ok(!packed[0]!.files.some((f) => f.path.endsWith('.test.ts') || f.path.startsWith('test/')), 'no tests in the package');
    execFileSync('npm', ['install', '-g', '--prefix', prefix, tarball, '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], {
      env,
      stdio: 'pipe',
      timeout: 240_000,
    });
    bin = join(prefix, 'bin', 'mcp-entra-gateway');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the installed command answers --help, serve --help and dev --help on Node 24', () => {
    for (const [args, first] of [
      [['--help'], 'Usage:'],
      [['serve', '--help'], 'Usage: mcp-entra-gateway serve --config FILE'],
      [['dev', '--help'], 'Usage: mcp-entra-gateway dev [options]'],
    ] as const) {
      const result = spawnSync(bin, [...args], { env, encoding: 'utf8', timeout: 30_000 });
      assert.equal(result.status, 0, `${args.join(' ')}: ${result.stderr}`);
      assert.equal(result.stdout.split('\n')[0], first);
    }
  });

  it('under an older Node it prints one line naming the Node it needs', (t) => {
    const version = existsSync(SYSTEM_NODE) ? execFileSync(SYSTEM_NODE, ['--version'], { encoding: 'utf8' }).trim() : '';
    const [major = 0, minor = 0] = version.slice(1).split('.').map(Number);
    if (!version || major > 22 || (major === 22 && minor >= 13)) return t.skip(`no Node older than 22.13 at ${SYSTEM_NODE} (${version || 'none'})`);
    const result = spawnSync(SYSTEM_NODE, [join(prefix, 'lib', 'node_modules', 'mcp-entra-gateway', 'bin', 'mcp-entra-gateway.js'), '--help'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(result.status, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, `mcp-entra-gateway needs Node.js 22.13 or newer (24 LTS recommended); this is Node.js ${version.slice(1)}\n`);
  });
});
