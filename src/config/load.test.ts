import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { selfSignedCertificate } from '../../test/support/tls.ts';
import { ConfigError, loadConfig } from './load.ts';

const VALID = `
publicUrl: https://mcp.example.com
secrets:
  encryptionKeys: [{ id: k1, key: { env: ENC_KEY } }]
  cookieKey: { env: COOKIE_KEY }
  signingKey: { env: SIGNING_KEY }
upstream:
  entra:
    tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
    clientId: app
    clientSecret: { env: ENTRA_SECRET }
backends:
  - { name: snippets, path: /mcp, url: http://127.0.0.1:7071/mcp }
`;
const SIGNING_PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const P384_PEM = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const ENV = { ENC_KEY: `${'a'.repeat(43)}=`, COOKIE_KEY: 'c'.repeat(40), SIGNING_KEY: SIGNING_PEM, ENTRA_SECRET: 's3cret' };

function problems(yamlText: string, env: Record<string, string> = ENV): string[] {
  try {
    loadConfig({ yamlText, env });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('loadConfig', () => {
  it('resolves env secrets, applies defaults and freezes', () => {
    const config = loadConfig({ yamlText: VALID, env: ENV });
    assert.equal(config.upstream.entra?.clientSecret, 's3cret');
    assert.equal(config.upstream.entra?.authorityHost, 'https://login.microsoftonline.com');
    assert.equal(config.tokens.accessTokenTtlSeconds, 3600);
    assert.equal(config.tokens.refreshTokenTtlSeconds, 30 * 86400);
    assert.equal(config.tokens.cacheMs, 1000);
    assert.deepEqual(config.store, { kind: 'sqlite', path: './data/gateway.db' });
    assert.throws(() => {
      (config as { publicUrl: string }).publicUrl = 'x';
    }, TypeError);
  });

  it('applies MCPGW_* overrides with snake → camel and YAML scalars', () => {
    const config = loadConfig({ yamlText: VALID, env: { ...ENV, MCPGW_LISTEN__PORT: '9000', MCPGW_TOKENS__ACCESS_TOKEN_TTL_SECONDS: '600' } });
    assert.equal(config.listen.port, 9000);
    assert.equal(config.tokens.accessTokenTtlSeconds, 600);
  });

  const cases: [string, string, Record<string, string> | undefined, string[]][] = [
    ['missing tenant id', VALID.replace('    tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47\n', ''), undefined, ['upstream.entra.tenantId: required']],
    ['unset env secret', VALID, { ...ENV, ENTRA_SECRET: '' }, ['upstream.entra.clientSecret: environment variable ENTRA_SECRET is not set']],
    ['http public URL off loopback', VALID.replace('https://mcp.example.com', 'http://mcp.example.com'), undefined, ['publicUrl: must be https (http only on loopback)']],
    [
      'multi-tenant without allow-list',
      VALID.replace('72f988bf-86f1-41af-91ab-2d7cd011db47', 'organizations'),
      undefined,
      ['upstream.entra.allowedTenants: required when tenantId is organizations'],
    ],
    ['two upstreams', VALID.replace('upstream:\n', 'upstream:\n  oidc: { issuer: https://idp.example.com, clientId: x, clientSecret: y }\n'), undefined, ['upstream: exactly one of dev, oidc or entra is required']],
    ['unknown key', `${VALID}\nbogus: 1\n`, undefined, ['(root): unknown key "bogus"']],
    ['a value of the wrong type is named as such, not as required', `${VALID}\nlisten: { port: eighty }\n`, undefined, ['listen.port: expected number, got a string']],
    [
      'a wrong-typed override names its variable',
      VALID,
      { ...ENV, MCPGW_LISTEN__PORT: 'eighty' },
      ['listen.port: expected number, got a string (from MCPGW_LISTEN__PORT)'],
    ],
    [
      'an override naming no config key names the variable',
      VALID,
      { ...ENV, MCPGW_ENCRYPTION_KEY: 'x' },
      ['MCPGW_ENCRYPTION_KEY (environment): encryptionKey is not a config key (overrides are MCPGW_<PATH>, segments joined by __, e.g. MCPGW_LISTEN__PORT)'],
    ],
    ['bad backend path', VALID.replace('path: /mcp', 'path: /tools'), undefined, ['backends.0.path: must end in /mcp, e.g. /mcp or /github/mcp']],
    ['not a URL', VALID.replace('https://mcp.example.com', 'nope'), undefined, ['publicUrl: Invalid URL']],
    ['token cache past the revocation bound', `${VALID}\ntokens: { cacheMs: 5000 }\n`, undefined, ['tokens.cacheMs: Too big: expected number to be <=1000']],
    [
      'a system-assigned managed identity (Entra federates user-assigned ones only)',
      VALID.replace('    clientSecret: { env: ENTRA_SECRET }\n', '    managedIdentity: {}\n'),
      undefined,
      ['upstream.entra.managedIdentity.clientId: required'],
    ],
    ['an encryption key of another size', VALID, { ...ENV, ENC_KEY: 'a'.repeat(44) }, ['secrets.encryptionKeys.0.key: must be 32 bytes, base64-encoded']],
    ['a short cookie key', VALID, { ...ENV, COOKIE_KEY: 'c'.repeat(31) }, ['secrets.cookieKey: must be at least 32 bytes']],
    ['a signing key that is no PEM', VALID, { ...ENV, SIGNING_KEY: 'pem' }, ['secrets.signingKey: not a PEM private key']],
    ['a signing key of another curve', VALID, { ...ENV, SIGNING_KEY: P384_PEM }, ['secrets.signingKey: must be a P-256 (prime256v1) EC key for ES256']],
    [
      'a private_key_jwt key that is no PEM',
      VALID.replace(/upstream:\n[\s\S]*?(?=backends:)/, 'upstream:\n  oidc: { issuer: https://idp.example.com, clientId: x, privateKeyJwt: { privateKey: nope } }\n'),
      undefined,
      ['upstream.oidc.privateKeyJwt.privateKey: not a PEM private key'],
    ],
    [
      'an Entra certificate credential without its certificate',
      VALID.replace('    clientSecret: { env: ENTRA_SECRET }\n', `    certificate: { privateKey: ${JSON.stringify(SIGNING_PEM)} }\n`),
      undefined,
      ['upstream.entra.certificate.certificate: required'],
    ],
    [
      'an Entra-app client whose tenant workloads.entra does not list',
      `${VALID}\nclients: [{ clientId: puller, entraApp: { tenantId: 11111111-2222-4333-8444-555555555555, appId: mi }, grantTypes: [client_credentials] }]\nworkloads: { entra: { tenants: [72f988bf-86f1-41af-91ab-2d7cd011db47], audiences: [api://gw] } }\n`,
      undefined,
      ["clients.0.entraApp.tenantId: needs workloads.entra with this tenant in tenants (its audiences and keys judge the app's token)"],
    ],
    [
      'an Entra-app client with a secret too',
      `${VALID}\nclients: [{ clientId: puller, secret: s, entraApp: { tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47, appId: mi }, grantTypes: [client_credentials] }]\nworkloads: { entra: { tenants: [72f988bf-86f1-41af-91ab-2d7cd011db47], audiences: [api://gw] } }\n`,
      undefined,
      ['clients.0.secret: exactly one of secret, jwks, jwksUri or entraApp is required'],
    ],
    [
      'workloads.entra naming no caller',
      `${VALID}\nworkloads: { entra: { tenants: [72f988bf-86f1-41af-91ab-2d7cd011db47], audiences: [api://gw] } }\n`,
      undefined,
      ['workloads.entra: allowedAppIds or requiredRoles must name who may call'],
    ],
    ['not YAML', 'a: [', undefined, ['(file):1:5: not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]']],
  ];
  for (const [name, yamlText, env, expected] of cases) {
    it(`names the key: ${name}`, () => assert.deepEqual(problems(yamlText, env), expected));
  }

  it('a YAML error names the file, line and column', () => {
    assert.throws(
      () => loadConfig({ yamlText: `${VALID}listen:\n  port: [8080\n`, fileName: 'gateway.yaml', env: ENV }),
      (error: ConfigError) => /^gateway\.yaml:\d+:\d+: not valid YAML: /.test(error.problems[0]!) && error.problems.length === 1,
    );
  });

  it('a secret the file reads as { env: MCPGW_… } is never an override: it cannot collide with a config path', () => {
    const yamlText = VALID.replace('{ env: ENC_KEY }', '{ env: MCPGW_ENCRYPTION_KEY }').replace('{ env: COOKIE_KEY }', '{ env: MCPGW_COOKIE_KEY }');
    const config = loadConfig({ yamlText, env: { ...ENV, MCPGW_ENCRYPTION_KEY: `${'e'.repeat(43)}=`, MCPGW_COOKIE_KEY: 'k'.repeat(40) } });
    assert.equal(config.secrets.cookieKey, 'k'.repeat(40));
    assert.equal(config.secrets.encryptionKeys[0]!.key, `${'e'.repeat(43)}=`);
  });
});

describe('loadConfig: backends[].tls (a private CA for an https backend)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const { cert } = selfSignedCertificate();
  writeFileSync(join(dir, 'ca.pem'), `${cert}\n${cert}`);
  writeFileSync(join(dir, 'key.pem'), SIGNING_PEM);
  writeFileSync(join(dir, 'broken.pem'), cert.replace(/^(-----BEGIN CERTIFICATE-----\n)..../, '$1AAAA'));
  const withTls = (tls: string, url = 'https://backend.internal/mcp') =>
    VALID.replace('url: http://127.0.0.1:7071/mcp }', `url: ${url}, tls: ${tls} }`);
  const load = (yamlText: string) => {
    try {
      return loadConfig({ yamlText, env: ENV, baseDir: dir });
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
  };

  it('reads the CA bundle from its file (relative to the config) with the servername', () => {
    const config = load(withTls('{ ca: { file: ca.pem }, servername: mcp.internal }'));
    assert.ok(!Array.isArray(config), String(config));
    assert.deepEqual(config.backends[0]!.tls, { ca: `${cert}\n${cert}`.trim(), servername: 'mcp.internal' });
  });

  const cases: [string, string, string[]][] = [
    ['a CA file that is missing', withTls('{ ca: { file: missing.pem } }'), [`backends.0.tls.ca: cannot read file ${join(dir, 'missing.pem')} (ENOENT)`]],
    ['a CA file that is no certificate', withTls('{ ca: { file: key.pem } }'), ['backends.0.tls.ca: not a PEM certificate (no -----BEGIN CERTIFICATE----- block)']],
    ['a CA certificate that does not parse', withTls('{ ca: { file: broken.pem } }'), ['backends.0.tls.ca: certificate 1 of the PEM bundle does not parse']],
    ['tls on an http backend', withTls('{ ca: { file: ca.pem } }', 'http://127.0.0.1:7071/mcp'), ['backends.0.tls: needs an https:// backend (url is http://)']],
    ['an unknown tls key', withTls('{ ca: { file: ca.pem }, rejectUnauthorized: false }'), ['backends.0.tls: unknown key "rejectUnauthorized"']],
    [
      'the Store shares the check',
      VALID.replace('backends:', 'store: { kind: redis, url: rediss://redis.internal:6380, tls: { ca: { file: key.pem } } }\nbackends:'),
      ['store.tls.ca: not a PEM certificate (no -----BEGIN CERTIFICATE----- block)'],
    ],
  ];
  for (const [name, yamlText, expected] of cases) {
    it(`names the key: ${name}`, () => assert.deepEqual(load(yamlText), expected));
  }
});
