import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startSnippetsBehindProxy } from '../support/snippets-gateway.ts';
import type { ProxyHarness, } from '../support/proxy-harness.ts';

describe('MCP proxy: the snippets server verifies the gateway credential and identity assertion', () => {
  let dir: string;
  let gateway: ProxyHarness;

  let system: Awaited<ReturnType<typeof startSnippetsBehindProxy>>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snippets-'));
    system = await startSnippetsBehindProxy(dir);
    gateway = system.gateway;
  });
  after(async () => {
    await system.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('greets the signed-in user named by the verified assertion and saves a snippet, over Streamable HTTP and legacy SSE', async () => {
    const token = await gateway.tokenFor('alice', 'snippets');
    const requestInit = { headers: { Authorization: `Bearer ${token}` } };
    const transports = [
      new StreamableHTTPClientTransport(new URL(`${gateway.url}/mcp`), { requestInit }),
      new SSEClientTransport(new URL(`${gateway.url}/mcp/sse`), { requestInit }),
    ];
    for (const transport of transports) {
      const client = new Client({ name: 'proxy-snippets-test', version: '1.0.0' });
      await client.connect(transport);
      try {
        const hello = await client.callTool({ name: 'hello_mcp', arguments: {} });
        assert.match((hello.content as { text: string }[])[0]!.text, /^Hello, Alice Admin/);
        const saved = await client.callTool({ name: 'save_snippet', arguments: { snippetname: 'greeting', snippet: 'hi' } });
        assert.equal(saved.isError, undefined);
      } finally {
        await client.close();
      }
    }
  });
});
