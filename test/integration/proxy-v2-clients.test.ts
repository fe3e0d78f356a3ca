import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Client, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';
import type { RunningSnippetsServer } from '../../servers/snippets/http.ts';
import { connectionGuide } from '../../src/dev.ts';
import type { Harness } from '../support/gateway-harness.ts';
import { HeadlessV2OAuthProvider } from '../support/sdk-oauth.ts';
import { startSnippetsBehindGateway } from '../support/snippets-gateway.ts';

const run = promisify(execFile);
/** Inspector 2.x: the first with `--protocol-era` (0.22 has none). */
const INSPECTOR = join(process.cwd(), 'node_modules', '.bin', 'mcp-inspector');
const MODERN = '2026-07-28';
const TOOL_NAMES = ['delete_snippet', 'get_snippet', 'hello_mcp', 'list_snippets', 'save_snippet'];
const HELLO_BOB =
  'Hello, Bob Builder! I am the snippets MCP server: save_snippet, get_snippet, list_snippets and delete_snippet keep text snippets for you.';

/** The v2 SDK client (2026-07-28, stateless) against the snippets server, through the gateway. */
describe('the v2 SDK client through the gateway on 2026-07-28', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mcpgw-v2-'));
  let gateway: Harness;
  let snippets: RunningSnippetsServer;
  const provider = new HeadlessV2OAuthProvider({ login: 'bob', password: 'bob-password' });

  before(async () => {
    ({ gateway, snippets } = await startSnippetsBehindGateway(dataDir));
  });
  after(async () => {
    await gateway.close();
    await snippets.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function connect(mode: 'auto' | { pin: string }) {
    const transport = new StreamableHTTPClientTransport(new URL(gateway.mcpUrl), { authProvider: provider });
    const client = new Client({ name: 'v2-through-gateway', version: '1.0.0' }, { versionNegotiation: { mode } });
    await client.connect(transport);
    return { client, transport };
  }

  it('signs in with its own OAuth support (401 → discovery → registration → consent → sign-in), then lists and calls the tools statelessly', async () => {
    const first = new StreamableHTTPClientTransport(new URL(gateway.mcpUrl), { authProvider: provider });
    const unsigned = new Client({ name: 'v2-through-gateway', version: '1.0.0' }, { versionNegotiation: { mode: { pin: MODERN } } });
    await assert.rejects(unsigned.connect(first), UnauthorizedError);
    assert.ok(provider.authorizationCode, 'signed in headless after the 401');
    // RFC 9207: the v2 client checks the callback's `iss` against the authorization server.
    assert.equal(provider.redirectedTo!.searchParams.get('iss'), gateway.publicUrl);
    await first.finishAuth(provider.redirectedTo!.searchParams);

    const { client, transport } = await connect({ pin: MODERN });
    try {
      assert.equal(client.getNegotiatedProtocolVersion(), MODERN);
      assert.equal(transport.sessionId, undefined, 'no session on 2026-07-28');
      assert.deepEqual((await client.listTools()).tools.map((tool) => tool.name).sort(), TOOL_NAMES);
      assert.deepEqual((await client.callTool({ name: 'hello_mcp' })).content, [{ type: 'text', text: HELLO_BOB }]);
      await client.callTool({ name: 'save_snippet', arguments: { snippetname: 'v2', snippet: 'through the gateway' } });
      const got = await client.callTool({ name: 'get_snippet', arguments: { snippetname: 'v2' } });
      assert.equal((got.content as { text: string }[])[0]?.text, 'through the gateway');
    } finally {
      await client.close();
    }
  });

  it('in auto mode discovers 2026-07-28 through the gateway', async () => {
    const { client, transport } = await connect('auto');
    try {
      assert.equal(client.getNegotiatedProtocolVersion(), MODERN);
      assert.equal(transport.sessionId, undefined);
      assert.equal((await client.listTools()).tools.length, TOOL_NAMES.length);
    } finally {
      await client.close();
    }
  });

  it('receives notifications/tools/list_changed on a subscriptions/listen stream through the gateway', async () => {
    const { client } = await connect({ pin: MODERN });
    try {
      const changed = new Promise<string>((resolve) => {
        client.setNotificationHandler('notifications/tools/list_changed', (notification) => resolve(notification.method));
      });
      const subscription = await client.listen({ toolsListChanged: true });
      assert.deepEqual(subscription.honoredFilter, { toolsListChanged: true });
      snippets.notify.toolsChanged();
      assert.equal(await changed, 'notifications/tools/list_changed');
      await subscription.close();
      assert.equal(await subscription.closed, 'local');
    } finally {
      await client.close();
    }
  });

  /** MCP Inspector's CLI with the bearer token the v2 client got (it has no headless sign-in). */
  async function inspector(era: 'modern' | 'auto', args: string[]): Promise<unknown> {
    const token = (await provider.tokens())!.access_token;
    const { stdout } = await run(
      process.execPath,
      [INSPECTOR, '--cli', gateway.mcpUrl, '--transport', 'http', '--protocol-era', era, '--header', `Authorization: Bearer ${token}`, ...args],
      { timeout: 60_000 },
    );
    return JSON.parse(stdout);
  }

  for (const era of ['modern', 'auto'] as const) {
    it(`MCP Inspector --cli --protocol-era ${era} lists and calls the tools through the gateway`, { timeout: 120_000 }, async () => {
      const listed = (await inspector(era, ['--method', 'tools/list'])) as { tools: { name: string }[] };
      assert.deepEqual(listed.tools.map((tool) => tool.name).sort(), TOOL_NAMES);
      const called = (await inspector(era, ['--method', 'tools/call', '--tool-name', 'hello_mcp'])) as { content: unknown };
      assert.deepEqual(called.content, [{ type: 'text', text: HELLO_BOB }]);
    });
  }

  it("the start-up guide's Inspector CLI line (--protocol-era modern) signs in through the gateway and lists the tools", { timeout: 120_000 }, async () => {
    const line = connectionGuide(gateway.publicUrl, 'http://127.0.0.1:9', [], 'audit.jsonl')
      .split('\n')
      .find((text) => text.includes('--protocol-era modern'));
    assert.ok(line, 'the guide has a modern-era Inspector line');
    const command = line.trim().split('   (')[0]!.split(' ');
    assert.deepEqual(command.slice(0, 2), ['npx', '@modelcontextprotocol/inspector']);
    const home = mkdtempSync(join(tmpdir(), 'mcpgw-inspector-home-'));
    // The Inspector prints the authorization URL; no TTY here, so it is told to go on without one,
    // and keeps its OAuth state in memory under a throwaway HOME.
    const child = spawn(process.execPath, [INSPECTOR, ...command.slice(2)], {
      env: { ...process.env, HOME: home, MCP_AUTO_OPEN_ENABLED: 'true', MCP_INSPECTOR_SECRET_STORE: 'memory', BROWSER: 'none' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk));
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      const authorizationUrl = await new Promise<URL>((resolve, reject) => {
        child.stderr.on('data', (chunk: Buffer) => {
          stderr += chunk;
          const match = /Please navigate to: (\S+)/.exec(stderr);
          if (match) resolve(new URL(match[1]!));
        });
        child.on('exit', () => reject(new Error(`the Inspector exited before asking to sign in: ${stderr}`)));
      });
      const user = new HeadlessV2OAuthProvider(
        { login: 'bob', password: 'bob-password' },
        { redirectUrl: authorizationUrl.searchParams.get('redirect_uri')! },
      );
      await user.redirectToAuthorization(authorizationUrl);
      // The browser's last step: the redirect back to the Inspector's loopback callback.
      const callback = await fetch(user.redirectedTo!);
      await callback.body?.cancel();
      assert.equal(await exited, 0, stderr);
      assert.deepEqual(((JSON.parse(stdout) as { tools: { name: string }[] }).tools.map((tool) => tool.name)).sort(), TOOL_NAMES);
    } finally {
      child.kill();
      rmSync(home, { recursive: true, force: true });
    }
  });
});
