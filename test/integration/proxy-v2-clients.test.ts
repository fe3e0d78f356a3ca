import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Client, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';
import type { RunningSnippetsServer } from '../../servers/snippets/http.ts';
import type { Harness } from '../support/gateway-harness.ts';
import { HeadlessV2OAuthProvider } from '../support/sdk-oauth.ts';
import { startSnippetsBehindGateway } from '../support/snippets-gateway.ts';

const run = promisify(execFile);
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
});
