import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { type McpBackend, startMcpBackend } from '../support/mcp-backend.ts';
import { type ProxyHarness, startProxyHarness } from '../support/proxy-harness.ts';

describe('MCP proxy: the official SDK client through the gateway', () => {
  let backend: McpBackend;
  let gateway: ProxyHarness;
  let token: string;

  before(async () => {
    backend = await startMcpBackend();
    gateway = await startProxyHarness({
      backends: [{ name: 'test', path: '/mcp', url: backend.mcpUrl, sseUrl: backend.sseUrl, credential: { header: 'x-functions-key', value: 'k' } }],
    });
    token = await gateway.tokenFor('alice', 'test');
  });
  after(async () => {
    await gateway.close();
    await backend.close();
  });

  const requestInit = () => ({ headers: { Authorization: `Bearer ${token}` } });

  for (const [name, transport] of [
    ['Streamable HTTP at /mcp', () => new StreamableHTTPClientTransport(new URL(`${gateway.url}/mcp`), { requestInit: requestInit() })],
    ['HTTP+SSE at /mcp/sse', () => new SSEClientTransport(new URL(`${gateway.url}/mcp/sse`), { requestInit: requestInit()})],
  ] as const) {
    it(`${name}: tools/list, tools/call, and progress that arrives spread over time`, async () => {
      const client = new Client({ name: 'proxy-test', version: '1.0.0' });
      await client.connect(transport());
      try {
        const { tools } = await client.listTools();
        assert.ok(tools.some((t) => t.name === 'echo'));
        assert.ok(tools.some((t) => t.name === 'progress'));

        const echoed = await client.callTool({ name: 'echo', arguments: { text: 'héllo through the gateway' } });
        assert.deepEqual(echoed.content, [{ type: 'text', text: 'héllo through the gateway' }]);

        const arrivals: number[] = [];
        const started = Date.now();
        const result = await client.callTool({ name: 'progress', arguments: { steps: 4, intervalMs: 200 } }, undefined, {
          onprogress: () => arrivals.push(Date.now() - started),
        });
        const finishedAt = Date.now() - started;
        assert.deepEqual(result.content, [{ type: 'text', text: 'done after 4 steps' }]);
        assert.equal(arrivals.length, 4);
        // Streaming is real: 4 notifications sent 200 ms apart arrive spread out, the first long before
        // the result (a buffered relay delivers all four with the result). Bounds leave room for a
        // loaded CPU delaying the first one (seen: 136, 240, 446, 648 ms).
        assert.ok(arrivals[3]! - arrivals[0]! >= 400, `progress spread ${arrivals.join(',')}`);
        assert.ok(finishedAt - arrivals[0]! >= 400, `first progress at ${arrivals[0]} ms, result at ${finishedAt} ms`);
        assert.ok(arrivals[3]! <= finishedAt);
      } finally {
        await client.close();
      }
    });
  }
});
