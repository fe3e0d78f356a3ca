import assert from 'node:assert/strict';
import { type ChildProcess, execSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import pino from 'pino';
import { parse as parseYaml } from 'yaml';
import { createFolderStorage } from '../../servers/snippets/folder-storage.ts';
import { type RunningSnippetsServer, startSnippetsServer } from '../../servers/snippets/http.ts';
import { docBlocks } from '../support/doc-blocks.ts';
import { type EntraShapedIdp, ENTRA_TEST_USERS, startEntraShapedIdp } from '../support/entra-shaped-idp.ts';
import { freePort } from '../support/ports.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const STARTUP_ATTEMPTS = 100;

/**
 * README "Use Entra ID", as a newcomer follows it: the secrets made with docs/production.md §2's
 * own commands, the example config written as is, `serve --config` started with exactly the
 * documented environment — plus the overrides only a test needs (marked below: a local Entra
 * look-alike instead of login.microsoftonline.com, loopback ports, a temp state file, the local
 * snippets server) — then a user signs in and a tool call goes through.
 */
describe('README "Use Entra ID": the documented config signs a user in and proxies a tool call', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-readme-entra-'));
  const example = docBlocks().find((b) => b.file === 'README.md' && b.heading === 'Use Entra ID' && b.lang === 'yaml')!;
  const secretCommands = docBlocks().find((b) => b.file === 'docs/production.md' && b.heading === '2. Secrets' && b.lang === 'sh')!;
  let idp: EntraShapedIdp;
  let snippets: RunningSnippetsServer;
  let gateway: ChildProcess;
  let publicUrl: string;
  let stderr = '';

  before(async () => {
    assert.ok(example && secretCommands, 'the README example and the secrets commands are found');
    const documented = parseYaml(example.text) as { upstream: { entra: { tenantId: string; clientId: string } } };
    writeFileSync(join(dir, 'gateway.yaml'), example.text);
    // docs/production.md §2, line by line: `command   # VARIABLE (…)` puts the output in VARIABLE.
    const env: Record<string, string> = { ENTRA_CLIENT_SECRET: 'the-entra-app-secret', SNIPPETS_KEY: 'the-snippets-function-key' };
    for (const line of secretCommands.text.split('\n').filter(Boolean)) {
      const [command, comment = ''] = line.split(/\s+#\s+/);
      const output = execSync(command!, { cwd: dir, encoding: 'utf8' }).trim();
      const variable = /^([A-Z][A-Z0-9_]+)\s/.exec(comment)?.[1];
      if (variable) env[variable] = output;
    }
    assert.ok(env['GATEWAY_ENCRYPTION_KEY'] && env['GATEWAY_COOKIE_KEY'], 'the commands named both keys');

    const port = await freePort();
    publicUrl = `http://localhost:${port}`;
    idp = await startEntraShapedIdp({
      tenantId: documented.upstream.entra.tenantId,
      client: { clientId: documented.upstream.entra.clientId, clientSecret: env['ENTRA_CLIENT_SECRET']!, redirectUris: [`${publicUrl}/callback`] },
    });
    snippets = await startSnippetsServer({
      storage: await createFolderStorage(join(dir, 'snippets')),
      port: 0,
      functionKey: env['SNIPPETS_KEY']!,
      identityJwksUrl: `${publicUrl}/.well-known/jwks.json`,
      identityAudience: `${publicUrl}/mcp`,
      logger: pino({ level: 'silent' }),
    });
    const testOnly = {
      MCPGW_PUBLIC_URL: publicUrl,
      MCPGW_LISTEN__HOST: '127.0.0.1',
      MCPGW_LISTEN__PORT: String(port),
      MCPGW_ADMIN__LISTEN__PORT: '0',
      MCPGW_STORE__PATH: join(dir, 'gateway.db'),
      MCPGW_UPSTREAM__ENTRA__AUTHORITY_HOST: idp.authorityHost,
      // http on loopback for the look-alike (production mode accepts only https upstreams)
      MCPGW_MODE: 'dev',
      MCPGW_BACKENDS__0__URL: snippets.mcpUrl,
      MCPGW_BACKENDS__0__SSE_URL: snippets.sseUrl,
    };
    gateway = spawn(process.execPath, [join(ROOT, 'src/cli.ts'), 'serve', '--config', join(dir, 'gateway.yaml')], {
      env: { PATH: process.env['PATH'] ?? '', ...env, ...testOnly },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    gateway.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    for (let attempt = 0; attempt < STARTUP_ATTEMPTS; attempt++) {
      if (gateway.exitCode !== null) break;
      const up = await fetch(`${publicUrl}/healthz`).then((r) => r.ok, () => false);
      if (up) return;
      await sleep(100);
    }
    assert.fail(`the gateway did not start: ${stderr}`);
  });
  after(async () => {
    if (gateway && gateway.exitCode === null) {
      gateway.kill('SIGTERM');
      await once(gateway, 'exit');
    }
    await snippets?.close();
    await idp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('signs Adele in through the Entra-shaped IdP and hello_mcp greets her by the verified assertion', async () => {
    const user = ENTRA_TEST_USERS[0]!;
    const provider = new HeadlessOAuthProvider({ login: user.login, password: user.password });
    const mcpUrl = new URL(`${publicUrl}/mcp`);
    assert.equal(await auth(provider, { serverUrl: mcpUrl }), 'REDIRECT');
    assert.equal(await auth(provider, { serverUrl: mcpUrl, authorizationCode: provider.authorizationCode! }), 'AUTHORIZED');
    const client = new Client({ name: 'readme-entra', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider }));
    try {
      const result = (await client.callTool({ name: 'hello_mcp', arguments: {} })) as { content: { type: string; text: string }[] };
      assert.match(result.content[0]!.text, new RegExp(`^Hello, ${user.name}!`));
    } finally {
      await client.close();
    }
    assert.equal(stderr.includes('"level":50'), false, `no errors logged: ${stderr}`);
  });
});
