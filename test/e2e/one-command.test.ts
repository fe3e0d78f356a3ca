import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { type StartedSystem, startSystem } from '../support/child-system.ts';
import { freePort } from '../support/ports.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

type ToolResult = { content: { type: string; text: string }[]; isError?: boolean };

/** The README's first command, as a newcomer runs it: sign in, use the tools, restart, keep going. */
describe('npm start: the whole system in one command', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mcpgw-e2e-'));
  let system: StartedSystem | undefined;
  after(async () => {
    if (system && system.child.exitCode === null) await system.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('signs in headless, saves and reads a snippet as its author, survives a restart without signing in again', async () => {
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    const args = ['--port', String(ports[0]), '--idp-port', String(ports[1]), '--snippets-port', String(ports[2]), '--admin-port', String(ports[3]), '--data', dataDir];
    system = await startSystem(args);
    assert.equal(system.mcpUrl, `http://localhost:${ports[0]}/mcp`);
    assert.ok(system.output().includes(`claude mcp add --transport http snippets http://localhost:${ports[0]}/mcp`));
    assert.ok(system.output().includes(`http://localhost:${ports[0]}/mcp/sse`));
    assert.ok(system.output().includes(`http://127.0.0.1:${ports[3]}/readyz`), 'readiness on the admin listener');
    const alice = system.users.find((u) => u.login === 'alice')!;
    assert.ok(alice.password.length >= 8);

    const provider = new HeadlessOAuthProvider(alice);
    const client = await connect(system.mcpUrl, provider);
    const saved = (await client.callTool({ name: 'save_snippet', arguments: { snippetname: 'hello', snippet: 'print("hi")' } })) as ToolResult;
    assert.equal(saved.isError, undefined);
    const listed = (await client.callTool({ name: 'list_snippets', arguments: {} })) as ToolResult;
    assert.ok(listed.content[0]!.text.includes('hello'));
    const got = (await client.callTool({ name: 'get_snippet', arguments: { snippetname: 'hello' } })) as ToolResult;
    assert.equal(got.content[0]!.text, 'print("hi")');
    assert.match(got.content[1]!.text, /saved by Alice Admin/);
    await client.close();

    assert.equal(await system.stop(), true, 'Ctrl-C stops every process cleanly');
    system = await startSystem(args);
    const redirectsBefore = provider.pages.length;
    provider.authorizationCode = undefined;
    const again = new Client({ name: 'e2e', version: '1.0.0' });
    await again.connect(new StreamableHTTPClientTransport(new URL(system.mcpUrl), { authProvider: provider }));
    const reread = (await again.callTool({ name: 'get_snippet', arguments: { snippetname: 'hello' } })) as ToolResult;
    assert.equal(reread.content[0]!.text, 'print("hi")');
    assert.equal(provider.authorizationCode, undefined, 'no new sign-in');
    assert.equal(provider.pages.length, redirectsBefore);
    await again.close();

    // A developer re-registering clients on loopback is never locked out (31 > the default 30 per hour).
    for (let i = 0; i < 31; i++) {
      const registered = await fetch(`http://localhost:${ports[0]}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ client_name: `dev client ${i}`, redirect_uris: ['http://127.0.0.1:3000/cb'], token_endpoint_auth_method: 'none' }),
      });
      assert.equal(registered.status, 201, `registration ${i + 1}`);
    }
    const landing = await fetch(`http://localhost:${ports[0]}/`);
    assert.equal(landing.status, 200);
    assert.ok((await landing.text()).includes(`<code class="mcp-url">${system.mcpUrl}</code>`), 'the landing page names the MCP URL');

    // The refresh renews the dev IdP's grant too: its state lives in the same SQLite file.
    const before = provider.tokens()!.refresh_token;
    assert.equal(await auth(provider, { serverUrl: system.mcpUrl }), 'AUTHORIZED');
    assert.notEqual(provider.tokens()!.refresh_token, before);
    assert.equal(provider.pages.length, redirectsBefore, 'still no sign-in');
  });
});

async function connect(url: string, provider: HeadlessOAuthProvider): Promise<Client> {
  const client = new Client({ name: 'e2e', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  try {
    await client.connect(transport);
    return client;
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
  }
  await transport.finishAuth(provider.authorizationCode!);
  const signedIn = new Client({ name: 'e2e', version: '1.0.0' });
  await signedIn.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider: provider }));
  return signedIn;
}
