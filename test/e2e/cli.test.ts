import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

const ROOT = new URL('../..', import.meta.url).pathname;

/** As cli(), without blocking this process's event loop (a test server must answer meanwhile). */
function cliAsync(args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/mcp-entra-gateway.js', ...args], { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '', ...env }, timeout: 30_000 }, (error, stdout, stderr) =>
      resolve({ status: error ? ((error as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

function cli(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ['bin/mcp-entra-gateway.js', ...args], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
}

describe('mcp-entra-gateway command line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('an invalid config exits 2 with one line per problem naming the key', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      [
        'publicUrl: http://gateway.example.com',
        'secrets:',
        '  encryptionKeys: [{ id: k1, key: { env: MISSING_KEY } }]',
        '  cookieKey: { file: ./no-such-file }',
        '  signingKey: pem',
        'upstream:',
        '  entra: { clientId: app, clientSecret: { env: ENTRA_SECRET } }',
        'backends: [{ name: snippets, path: /mcp, url: "http://127.0.0.1:7071/mcp" }]',
        '',
      ].join('\n'),
    );
    const result = cli(['serve', '--config', file], { ENTRA_SECRET: 'super-secret-value' });
    assert.equal(result.status, 2);
    assert.equal(
      result.stderr,
      [
        'secrets.encryptionKeys.0.key: environment variable MISSING_KEY is not set',
        `secrets.cookieKey: cannot read file ${join(dir, 'no-such-file')} (ENOENT)`,
        '',
      ].join('\n'),
    );
    const schemaOnly = cli(['serve', '--config', file], { ENTRA_SECRET: 'super-secret-value', MISSING_KEY: `${'a'.repeat(43)}=` });
    writeFileSync(join(dir, 'no-such-file'), 'c'.repeat(40));
    const second = cli(['serve', '--config', file], { ENTRA_SECRET: 'super-secret-value', MISSING_KEY: `${'a'.repeat(43)}=` });
    assert.equal(schemaOnly.status, 2);
    assert.equal(second.status, 2);
    assert.equal(second.stderr, ['publicUrl: must be https (http only on loopback)', 'secrets.signingKey: not a PEM private key', 'upstream.entra.tenantId: required', ''].join('\n'));
    assert.ok(!second.stderr.includes('super-secret-value'), 'secrets are never printed');
  });

  it('a missing config file is named', () => {
    const result = cli(['serve', '--config', join(dir, 'absent.yaml')]);
    assert.equal(result.status, 2);
    assert.equal(result.stderr, `config file not found: ${join(dir, 'absent.yaml')}\n`);
  });

  it('an unknown command prints usage and exits 2', () => {
    const result = cli(['frobnicate']);
    assert.equal(result.status, 2);
    assert.match(result.stdout, /^Usage:\n {2}mcp-entra-gateway serve --config FILE/);
  });

  it('serve and dev answer --help with their own usage, exit 0', () => {
    for (const [args, first] of [
      [['serve', '--help'], 'Usage: mcp-entra-gateway serve --config FILE'],
      [['dev', '-h'], 'Usage: mcp-entra-gateway dev [options]'],
      [['--help'], 'Usage:'],
    ] as const) {
      const result = cli([...args]);
      assert.equal(result.status, 0, `${args.join(' ')}: ${result.stderr}`);
      assert.equal(result.stdout.split('\n')[0], first);
      assert.equal(result.stderr, '');
    }
  });

  it('serve without --config lists what is missing and says to pass a config file', () => {
    const result = cli(['serve']);
    assert.equal(result.status, 2);
    const lines = result.stderr.trim().split('\n');
    assert.ok(lines.includes('publicUrl: required'), result.stderr);
    assert.equal(lines.at(-1), 'no config file given: pass --config FILE (mcp-entra-gateway serve --help; docs/configuration.md)');
  });

  it('a YAML syntax error names the file, line and column', () => {
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, 'publicUrl: https://mcp.example.com\nlisten: { port: 8080\nbackends: []\n');
    const result = cli(['serve', '--config', file]);
    assert.equal(result.status, 2);
    assert.match(result.stderr, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:\\d+: not valid YAML: .+\n$`));
  });

  it('a port in use is named by the flag that sets it', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as AddressInfo).port;
    try {
      const result = await cliAsync(['dev', '--port', String(port), '--idp-port', '0', '--snippets-port', '0', '--admin-port', '0', '--data', join(dir, 'dev-data')]);
      assert.equal(result.status, 1);
      assert.equal(result.stderr, `mcp-entra-gateway: --port: port ${port} on 127.0.0.1 is already in use; choose another\n`);
    } finally {
      busy.close();
    }
  });

  it('a bad port is refused with the flag named', () => {
    const result = cli(['dev', '--port', 'eighty']);
    assert.equal(result.status, 1);
    assert.equal(result.stderr, 'mcp-entra-gateway: --port: must be a port number (0-65535)\n');
  });
});
