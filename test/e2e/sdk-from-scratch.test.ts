import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { RunningSnippetsServer } from '../../servers/snippets/http.ts';
import type { Harness } from '../support/gateway-harness.ts';
import { startSnippetsBehindGateway } from '../support/snippets-gateway.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

type ToolResult = { content: { type: string; text: string }[] };

/** Unmodified SDK clients from nothing: 401 → discovery → registration → consent → sign-in → tools. */
describe('the official SDK client connects from scratch through the gateway', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mcpgw-scratch-'));
  let gateway: Harness;
  let snippets: RunningSnippetsServer;
  before(async () => {
    ({ gateway, snippets } = await startSnippetsBehindGateway(dataDir));
  });
  after(async () => {
    await gateway.close();
    await snippets.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const transports: [string, (url: string, provider: HeadlessOAuthProvider) => Transport, string][] = [
    ['Streamable HTTP at /mcp', (url, authProvider) => new StreamableHTTPClientTransport(new URL(url), { authProvider }), '/mcp'],
    ['legacy HTTP+SSE at /mcp/sse', (url, authProvider) => new SSEClientTransport(new URL(url), { authProvider }), '/mcp/sse'],
  ];
  for (const [name, makeTransport, path] of transports) {
    it(name, async () => {
      const url = `${gateway.publicUrl}${path}`;
      const provider = new HeadlessOAuthProvider({ login: 'bob', password: 'bob-password' });
      const first = makeTransport(url, provider);
      await assert.rejects(new Client({ name: 'scratch', version: '1.0.0' }).connect(first), UnauthorizedError);
      assert.ok(provider.authorizationCode, 'signed in headless after the 401');
      await (first as StreamableHTTPClientTransport | SSEClientTransport).finishAuth(provider.authorizationCode!);

      const client = new Client({ name: 'scratch', version: '1.0.0' });
      await client.connect(makeTransport(url, provider));
      const tools = await client.listTools();
      assert.deepEqual(tools.tools.map((t) => t.name).sort(), ['delete_snippet', 'get_snippet', 'hello_mcp', 'list_snippets', 'save_snippet']);
      const hello = (await client.callTool({ name: 'hello_mcp', arguments: {} })) as ToolResult;
      assert.match(hello.content[0]!.text, /Bob Builder/);
      await client.close();
    });
  }
});
