import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse as parseYaml, stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.ts';
import { docBlocks } from '../support/doc-blocks.ts';
import { selfSignedCertificate } from '../support/tls.ts';

/**
 * Every ```yaml block of README.md and docs/ is a gateway config, checked against the schema as a
 * newcomer would use it: the environment variables the docs name are set (to values of the right
 * shape), the files they name exist next to the config. A fragment (e.g. a `store:` section) is
 * checked inside the README's Entra example. A doc that names a new variable or file fails here
 * until this table names it too.
 */
const DOCUMENTED_ENV = {
  GATEWAY_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
  GATEWAY_COOKIE_KEY: randomBytes(48).toString('base64'),
  ENTRA_CLIENT_SECRET: 'entra-client-secret-value',
  SNIPPETS_KEY: 'snippets-function-key',
  REDIS_URL: 'rediss://:access-key@contoso.redis.cache.windows.net:6380',
  AZURE_CLIENT_ID: '7d1f3c2e-5b8a-4c6d-9e0f-1a2b3c4d5e6f',
  AUDIT_APPLICATIONINSIGHTS_CONNECTION_STRING: 'InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/',
};
const DOCUMENTED_FILES = {
  'internal-ca.pem': selfSignedCertificate().cert,
  'assertion-key.pem': generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
};

describe('config examples in README.md and docs/ validate against the schema', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-doc-config-'));
  for (const [name, content] of Object.entries(DOCUMENTED_FILES)) writeFileSync(join(dir, name), content);
  after(() => rmSync(dir, { recursive: true, force: true }));

  const blocks = docBlocks().filter((b) => b.lang === 'yaml');
  const readmeEntra = blocks.find((b) => b.file === 'README.md' && b.heading === 'Use Entra ID');

  it('finds the README Entra example and the docs examples', () => {
    assert.ok(readmeEntra, 'README.md has a yaml block under "Use Entra ID"');
    assert.ok(blocks.some((b) => b.file.startsWith('docs/')), 'docs/ has yaml blocks');
  });

  for (const block of blocks) {
    it(`${block.file}:${block.line} (${block.heading})`, () => {
      const example = parseYaml(block.text) as Record<string, unknown>;
      assert.equal(typeof example, 'object');
      const whole = 'publicUrl' in example ? example : { ...(parseYaml(readmeEntra!.text) as Record<string, unknown>), ...example };
      const config = loadConfig({ yamlText: stringify(whole), env: DOCUMENTED_ENV, baseDir: dir });
      for (const key of Object.keys(example)) assert.ok(key in config, `${key} is a config key`);
    });
  }
});
