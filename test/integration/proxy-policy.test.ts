import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { DEV_POLICY_RULES } from '../../src/dev.ts';
import { startSnippetsBehindProxy } from '../support/snippets-gateway.ts';
import { type ProxyHarness, startProxyHarness } from '../support/proxy-harness.ts';

const RULES = DEV_POLICY_RULES.map((rule) => ({ ...rule, effect: 'allow' as const }));
const READ_TOOLS = ['get_snippet', 'hello_mcp', 'list_snippets'];

type PolicyRules = NonNullable<Parameters<typeof startProxyHarness>[0]['backends'][number]['policy']>['rules'];

/** A gateway with one backend `name` at /mcp, proxying to the local `backend`, under `rules`. */
function startPolicyGateway(name: string, backend: Server, rules: PolicyRules, options: { trustProxy?: boolean | string[] } = {}): Promise<ProxyHarness> {
  const url = `http://127.0.0.1:${(backend.address() as AddressInfo).port}/mcp`;
  return startProxyHarness({ ...options, backends: [{ name, path: '/mcp', url, policy: { rules } }] });
}

describe('policy: the dev sample policy on the snippets server, with the SDK client', () => {
  let dir: string;
  let gateway: ProxyHarness;

  let system: Awaited<ReturnType<typeof startSnippetsBehindProxy>>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snippets-policy-'));
    system = await startSnippetsBehindProxy(dir, { policy: { rules: RULES } });
    gateway = system.gateway;
  });
  after(async () => {
    await system.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function clientsFor(user: 'alice' | 'bob', role: string) {
    const token = await gateway.tokenFor(user, 'snippets', undefined, { roles: [role] });
    const requestInit = { headers: { Authorization: `Bearer ${token}` } };
    return [
      ['Streamable HTTP', new StreamableHTTPClientTransport(new URL(`${gateway.url}/mcp`), { requestInit })],
      ['legacy SSE', new SSEClientTransport(new URL(`${gateway.url}/mcp/sse`), { requestInit })],
    ] as const;
  }

  it('bob (Snippets.Read) lists exactly the three read tools; save_snippet is refused as unknown and nothing is saved', async () => {
    for (const [transportName, transport] of await clientsFor('bob', 'Snippets.Read')) {
      const client = new Client({ name: 'policy-test', version: '1.0.0' });
      await client.connect(transport);
      try {
        const { tools } = await client.listTools();
        assert.deepEqual(tools.map((t) => t.name).sort(), READ_TOOLS, transportName);
        await assert.rejects(client.callTool({ name: 'save_snippet', arguments: { snippetname: 'bobs', snippet: 'x' } }), (error: Error & { code?: number }) => {
          assert.equal(error.code, -32602, transportName);
          assert.match(error.message, /Tool save_snippet not found/);
          return true;
        });
        const hello = await client.callTool({ name: 'hello_mcp', arguments: {} });
        assert.match((hello.content as { text: string }[])[0]!.text, /^Hello, Bob Builder/);
      } finally {
        await client.close();
      }
    }
    assert.deepEqual(await readdir(dir), []);
  });

  it('a hidden tool is answered by the gateway exactly as the SDK server answers an unknown tool', async () => {
    const token = await gateway.tokenFor('bob', 'snippets', undefined, { roles: ['Snippets.Read'] });
    const call = async (name: string) => {
      const response = await fetch(`${gateway.url}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name, arguments: {} } }),
      });
      return { status: response.status, body: await response.json() };
    };
    assert.deepEqual(await call('save_snippet'), { status: 200, body: { jsonrpc: '2.0', error: { code: -32602, message: 'Tool save_snippet not found' }, id: 7 } });
  });

  it('alice (Snippets.Write) lists and calls all five tools', async () => {
    for (const [transportName, transport] of await clientsFor('alice', 'Snippets.Write')) {
      const client = new Client({ name: 'policy-test', version: '1.0.0' });
      await client.connect(transport);
      try {
        const { tools } = await client.listTools();
        assert.deepEqual(tools.map((t) => t.name).sort(), ['delete_snippet', ...READ_TOOLS, 'save_snippet'].sort(), transportName);
        const name = transportName === 'legacy SSE' ? 'legacy' : 'streamable';
        for (const [tool, args] of [
          ['hello_mcp', {}],
          ['save_snippet', { snippetname: name, snippet: 'hi' }],
          ['get_snippet', { snippetname: name }],
          ['list_snippets', {}],
          ['delete_snippet', { snippetname: name }],
        ] as const) {
          const result = await client.callTool({ name: tool, arguments: args });
          assert.equal(result.isError, undefined, `${transportName} ${tool}`);
        }
      } finally {
        await client.close();
      }
    }
  });
});

/** A backend that answers tools/list as SSE in pages (a notification event first) and prompts/list as JSON. */
function startPagedBackend(): Promise<Server> {
  const tools = [['read_a', 'write_a'], ['read_b', 'write_b']];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk) => (raw += chunk));
    req.on('end', () => {
      const message = JSON.parse(raw);
      if (message.method === 'tools/list') {
        const page = message.params?.cursor === 'p2' ? 1 : 0;
        const result = { tools: tools[page]!.map((name) => ({ name, inputSchema: { type: 'object' } })), ...(page === 0 ? { nextCursor: 'p2' } : {}) };
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"listing write_a"}}\n\n');
        res.end(`id: e${page}\nevent: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result })}\n\n`);
        return;
      }
      const body = JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { prompts: [{ name: 'summary' }, { name: 'secret' }] } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe('policy: list results filtered inside SSE and JSON answers, page by page', () => {
  let backend: Server;
  let gateway: ProxyHarness;
  before(async () => {
    backend = await startPagedBackend();
    gateway = await startPolicyGateway('paged', backend, [
      { name: 'readers', effect: 'allow', tools: ['read_*'], prompts: ['summary'] },
      { name: 'writers', effect: 'allow', tools: ['write_*'], roles: ['Writer'] },
    ]);
  });
  after(async () => {
    await gateway.close();
    backend.close();
  });

  async function post(token: string, body: { method: string; [key: string]: unknown }, protocolVersion = '2025-06-18') {
    const response = await fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': protocolVersion,
        'mcp-method': body.method,
      },
      body: JSON.stringify(body),
    });
    return response.text();
  }

  it('each page of an SSE list answer keeps only the allowed tools and its nextCursor; other events pass untouched', async () => {
    const token = await gateway.tokenFor('bob', 'paged');
    const first = await post(token, { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
    assert.equal(
      first,
      'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"listing write_a"}}\n\n' +
        'id: e0\nevent: message\ndata: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_a","inputSchema":{"type":"object"}}],"nextCursor":"p2"}}\n\n',
    );
    const second = await post(token, { jsonrpc: '2.0', id: 2, method: 'tools/list', params: { cursor: 'p2' } });
    assert.match(second, /data: \{"jsonrpc":"2.0","id":2,"result":\{"tools":\[\{"name":"read_b","inputSchema":\{"type":"object"\}\}\]\}\}\n\n$/);
  });

  it('a writer sees every tool', async () => {
    const token = await gateway.tokenFor('bob', 'paged', undefined, { roles: ['Writer'] });
    const first = await post(token, { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
    assert.match(first, /"tools":\[\{"name":"read_a".*\{"name":"write_a".*"nextCursor":"p2"/);
  });

  it('a list request is known by its parsed method (an escaped slash included): its answer is filtered', async () => {
    const token = await gateway.tokenFor('bob', 'paged');
    const response = await fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: '{"jsonrpc":"2.0","id":5,"method":"prompts\\/list","params":{}}',
    });
    assert.equal(await response.text(), '{"jsonrpc":"2.0","id":5,"result":{"prompts":[{"name":"summary"}]}}');
  });

  it('a JSON list answer is filtered, and marked cacheScope private for 2026-07-28', async () => {
    const token = await gateway.tokenFor('bob', 'paged');
    assert.equal(await post(token, { jsonrpc: '2.0', id: 3, method: 'prompts/list', params: {} }), '{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"summary"}]}}');
    assert.equal(
      await post(token, { jsonrpc: '2.0', id: 4, method: 'prompts/list', params: {} }, '2026-07-28'),
      '{"jsonrpc":"2.0","id":4,"result":{"prompts":[{"name":"summary"}],"cacheScope":"private"}}',
    );
  });
});

describe('policy: Mcp-Param-* headers as request.params (2026-07-28 custom headers from tool parameters)', () => {
  let backend: Server;
  let gateway: ProxyHarness;
  before(async () => {
    // Answers tools/list with one tool whose `region` is mirrored into Mcp-Param-Region, and every call with ok.
    backend = createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk) => (raw += chunk));
      req.on('end', () => {
        const message = JSON.parse(raw);
        const inputSchema = { type: 'object', properties: { region: { type: 'string', 'x-mcp-header': 'Region' } } };
        const result = message.method === 'tools/list' ? { tools: [{ name: 'query', inputSchema }] } : { content: [{ type: 'text', text: 'ok' }] };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
      });
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    gateway = await startPolicyGateway('regional', backend, [
      { name: 'eu-only', effect: 'allow', tools: ['query'], when: 'request.params.region == "eu-west"' },
      { name: 'no-dry-run', effect: 'deny', tools: ['query'], when: 'has(request.params.mode) && request.params.mode == "dry"' },
    ]);
  });
  after(async () => {
    await gateway.close();
    backend.close();
  });

  async function call(params: Record<string, string>, protocolVersion = '2026-07-28', method = 'tools/call') {
    const token = await gateway.tokenFor('bob', 'regional');
    const response = await fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': protocolVersion,
        'mcp-method': method,
        ...(method === 'tools/call' ? { 'mcp-name': 'query' } : {}),
        ...params,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: method === 'tools/call' ? { name: 'query', arguments: { region: 'eu-west' } } : {} }),
    });
    return { status: response.status, body: (await response.json()) as { result?: { tools?: { name: string }[] } } };
  }
  const OK = { status: 200, body: { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'ok' }] } } };
  const REFUSED = { status: 200, body: { jsonrpc: '2.0', error: { code: -32602, message: 'Tool query not found' }, id: 1 } };

  it('a rule on request.params.region allows the call by its header, plain or Base64-encoded, whatever the header name case', async () => {
    assert.deepEqual(await call({ 'Mcp-Param-Region': 'eu-west' }), OK);
    assert.deepEqual(await call({ 'mcp-param-region': '=?base64?ZXUtd2VzdA==?=' }), OK);
  });

  it('another value, no header, or a malformed Base64 value is refused', async () => {
    assert.deepEqual(await call({ 'Mcp-Param-Region': 'us-east1' }), REFUSED);
    assert.deepEqual(await call({}), REFUSED);
    assert.deepEqual(await call({ 'Mcp-Param-Region': '=?base64?not base64?=' }), REFUSED);
  });

  it('a deny rule on another header refuses the call', async () => {
    assert.deepEqual(await call({ 'Mcp-Param-Region': 'eu-west', 'Mcp-Param-Mode': 'dry' }), REFUSED);
    assert.deepEqual(await call({ 'Mcp-Param-Region': 'eu-west', 'Mcp-Param-Mode': 'live' }), OK);
  });

  it('before 2026-07-28 (headers not validated against the body by the backend) the header is not trusted', async () => {
    assert.deepEqual(await call({ 'Mcp-Param-Region': 'eu-west' }, '2025-11-25'), REFUSED);
  });

  it('tools/list (no parameters to judge) still lists the tool a rule on request.params may allow', async () => {
    assert.deepEqual((await call({}, '2026-07-28', 'tools/list')).body.result?.tools?.map((t) => t.name), ['query']);
  });
});

describe('policy: request.ip honours trustProxy on the MCP routes, as fastify does on its own', () => {
  let backend: Server;
  const gateways: ProxyHarness[] = [];
  const OK = { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'ok' }] } };
  const REFUSED = { jsonrpc: '2.0', error: { code: -32602, message: 'Tool office not found' }, id: 1 };
  before(async () => {
    backend = createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk) => (raw += chunk));
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: JSON.parse(raw).id, result: { content: [{ type: 'text', text: 'ok' }] } }));
      });
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    for (const gateway of gateways) await gateway.close();
    backend.close();
  });

  /** A gateway whose tool `office` is allowed from 203.0.113.7 alone, and `local` from 127.0.0.1. */
  async function gatewayWith(trustProxy: boolean | string[]) {
    const rules = [
      { name: 'office-only', effect: 'allow' as const, tools: ['office'], when: 'request.ip == "203.0.113.7"' },
      { name: 'local-only', effect: 'allow' as const, tools: ['local'], when: 'request.ip == "127.0.0.1"' },
    ];
    const gateway = await startPolicyGateway('office', backend, rules, { trustProxy });
    gateways.push(gateway);
    const token = await gateway.tokenFor('bob', 'office');
    return async (forwardedFor?: string, tool = 'office') => {
      const response = await fetch(`${gateway.url}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...(forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }),
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: tool, arguments: {} } }),
      });
      return response.json();
    };
  }

  it('trustProxy on: the rule sees the X-Forwarded-For address', async () => {
    const call = await gatewayWith(true);
    assert.deepEqual(await call('203.0.113.7'), OK);
    assert.deepEqual(await call('198.51.100.1'), REFUSED);
    assert.deepEqual(await call(), REFUSED);
    // No X-Forwarded-For: the socket's address, as fastify's request.ip.
    assert.deepEqual(await call(undefined, 'local'), OK);
  });

  it('trustProxy a list: only a listed proxy is believed, and the nearest untrusted address is the client', async () => {
    const loopback = await gatewayWith(['127.0.0.1']);
    assert.deepEqual(await loopback('203.0.113.7'), OK);
    // 198.51.100.1 is not a trusted proxy: what it claims to forward for is not believed.
    assert.deepEqual(await loopback('203.0.113.7, 198.51.100.1'), REFUSED);
    const elsewhere = await gatewayWith(['10.0.0.1']);
    assert.deepEqual(await elsewhere('203.0.113.7'), REFUSED);
  });

  it('trustProxy off: the rule sees the socket address, whatever X-Forwarded-For says', async () => {
    const call = await gatewayWith(false);
    assert.deepEqual(await call('203.0.113.7'), REFUSED);
    assert.deepEqual(await call('203.0.113.7', 'local'), OK);
  });
});
