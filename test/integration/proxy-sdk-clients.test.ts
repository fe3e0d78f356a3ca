import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import pino from 'pino';
import { type Audit, createAudit } from '../../src/audit/audit.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { type McpBackend, startMcpBackend } from '../support/mcp-backend.ts';
import { type ProxyHarness, startProxyHarness } from '../support/proxy-harness.ts';

/** The SDK's two transports to the gateway at `url`, presenting `token`. */
const TRANSPORTS = [
  ['Streamable HTTP at /mcp', (url: string, token: string) => new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } })],
  ['HTTP+SSE at /mcp/sse', (url: string, token: string) => new SSEClientTransport(new URL(`${url}/mcp/sse`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } })],
] as const;

/**
 * Calls the backend's `progress` tool (4 notifications 200 ms apart) and checks that streaming is
 * real: they arrive spread out, the first long before the result (a buffered relay delivers all four
 * with the result). Bounds leave room for a loaded CPU delaying the first one (seen: 136, 240, 446,
 * 648 ms). When each notification arrived and when the result did, in ms from the call.
 */
async function assertProgressStreamed(client: Client): Promise<{ arrivals: number[]; finishedAt: number }> {
  const arrivals: number[] = [];
  const started = Date.now();
  const result = await client.callTool({ name: 'progress', arguments: { steps: 4, intervalMs: 200 } }, undefined, {
    onprogress: () => arrivals.push(Date.now() - started),
  });
  const finishedAt = Date.now() - started;
  assert.deepEqual(result.content, [{ type: 'text', text: 'done after 4 steps' }]);
  assert.equal(arrivals.length, 4);
  assert.ok(arrivals[3]! - arrivals[0]! >= 400, `progress spread ${arrivals.join(',')}`);
  assert.ok(finishedAt - arrivals[0]! >= 400, `first progress at ${arrivals[0]} ms, result at ${finishedAt} ms`);
  return { arrivals, finishedAt };
}

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

  for (const [name, transport] of TRANSPORTS) {
    it(`${name}: tools/list, tools/call, and progress that arrives spread over time`, async () => {
      const client = new Client({ name: 'proxy-test', version: '1.0.0' });
      await client.connect(transport(gateway.url, token));
      try {
        const { tools } = await client.listTools();
        assert.ok(tools.some((t) => t.name === 'echo'));
        assert.ok(tools.some((t) => t.name === 'progress'));

        const echoed = await client.callTool({ name: 'echo', arguments: { text: 'héllo through the gateway' } });
        assert.deepEqual(echoed.content, [{ type: 'text', text: 'héllo through the gateway' }]);

        const { arrivals, finishedAt } = await assertProgressStreamed(client);
        assert.ok(arrivals[3]! <= finishedAt);
      } finally {
        await client.close();
      }
    });
  }
});

describe('MCP proxy with the audit trail on: answers are read on their way, still streamed', () => {
  let backend: McpBackend;
  let gateway: ProxyHarness;
  let audit: Audit;
  let token: string;
  const lines: string[] = [];

  before(async () => {
    backend = await startMcpBackend();
    const signingKeyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    audit = await createAudit(
      { sink: 'stdout', file: { path: '', maxBytes: 1, maxFiles: 1 }, arguments: 'hash', redact: [], checkpointSeconds: 3600, queueMax: 1000 },
      { signingKeyPem, clock: systemClock, logger: pino({ level: 'silent' }), sink: { write: async (written) => void lines.push(...written), close: async () => {} } },
    );
    gateway = await startProxyHarness({
      backends: [{ name: 'test', path: '/mcp', url: backend.mcpUrl, sseUrl: backend.sseUrl, credential: { header: 'x-functions-key', value: 'k' } }],
      audit,
    });
    token = await gateway.tokenFor('alice', 'test');
  });
  after(async () => {
    await gateway.close();
    await backend.close();
    await audit.close();
  });

  for (const [name, transport] of TRANSPORTS) {
    it(`${name}: progress arrives spread over time; the call is one record with the answer's outcome`, async () => {
      const client = new Client({ name: 'proxy-test', version: '1.0.0' });
      await client.connect(transport(gateway.url, token));
      try {
        await assertProgressStreamed(client);
        // A tool error's outcome comes from its answer (an SSE event on either transport).
        const missing = await client.callTool({ name: 'test_error_handling', arguments: {} });
        assert.equal(missing.isError, true);
      } finally {
        await client.close();
      }
      await audit.flush();
      const calls = lines
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .filter((r) => r['event.name'] === 'mcp.operation' && r['mcp.method.name'] === 'tools/call' && r['mcp.session.id'] !== undefined);
      lines.length = 0;
      const progress = calls.filter((r) => r['gen_ai.tool.name'] === 'progress');
      assert.equal(progress.length, 1, 'one record for the call, none for its notifications');
      assert.equal(progress[0]!['error.type'], undefined);
      assert.equal(progress[0]!['http.response.status_code'], name.startsWith('HTTP+SSE') ? 202 : 200);
      assert.ok(Number(progress[0]!['gateway.duration_ms']) >= 600, 'recorded when the answer came, after the progress');
      const failed = calls.filter((r) => r['gen_ai.tool.name'] === 'test_error_handling');
      assert.equal(failed.length, 1);
      assert.equal(failed[0]!['error.type'], 'tool_error');
    });
  }
});
