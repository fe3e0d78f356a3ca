import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

const ROOT = new URL('../..', import.meta.url).pathname;

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
    const schemaOnly = cli(['serve', '--config', file], { ENTRA_SECRET: 'super-secret-value', MISSING_KEY: 'a'.repeat(44) });
    writeFileSync(join(dir, 'no-such-file'), 'c'.repeat(40));
    const second = cli(['serve', '--config', file], { ENTRA_SECRET: 'super-secret-value', MISSING_KEY: 'a'.repeat(44) });
    assert.equal(schemaOnly.status, 2);
    assert.equal(second.status, 2);
    assert.equal(second.stderr, ['publicUrl: must be https (http only on loopback)', 'upstream.entra.tenantId: required', ''].join('\n'));
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

  it('a bad port is refused with the flag named', () => {
    const result = cli(['dev', '--port', 'eighty']);
    assert.equal(result.status, 1);
    assert.equal(result.stderr, 'mcp-entra-gateway: --port: must be a port number (0-65535)\n');
  });
});
