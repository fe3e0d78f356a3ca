import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import pino from 'pino';
import { createFolderStorage } from '../../servers/snippets/folder-storage.ts';
import { type RunningSnippetsServer, startSnippetsServer } from '../../servers/snippets/http.ts';
import { freePort } from '../support/ports.ts';
import { type ProxyHarness, startProxyHarness } from '../support/proxy-harness.ts';

describe('MCP proxy: the snippets server verifies the gateway credential and identity assertion', () => {
  let dir: string;
  let snippets: RunningSnippetsServer;
  let gateway: ProxyHarness;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snippets-'));
    // The gateway's URL (JWKS, audience) must be known before the snippets server starts.
    const snippetsPort = await freePort();
    gateway = await startProxyHarness({
      backends: [
        {
          name: 'snippets',
          path: '/mcp',
          url: `http://127.0.0.1:${snippetsPort}/mcp`,
          sseUrl: `http://127.0.0.1:${snippetsPort}/sse`,
          credential: { header: 'x-functions-key', value: 'functions-key-1' },
        },
      ],
    });
    snippets = await startSnippetsServer({
      storage: await createFolderStorage(dir),
      port: snippetsPort,
      functionKey: 'functions-key-1',
      identityJwksUrl: `${gateway.url}/.well-known/jwks.json`,
      identityAudience: `${gateway.url}/mcp`,
      identityIssuer: gateway.url,
      logger: pino({ level: 'silent' }),
    });
  });
  after(async () => {
    await gateway.close();
    await snippets.close();
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
