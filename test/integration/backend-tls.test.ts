import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type ProxyHarness, startProxyHarness } from '../support/proxy-harness.ts';
import { privateCaCertificate } from '../support/tls.ts';

const ACCEPT = 'application/json, text/event-stream';
const PING = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' });

/**
 * backends[].tls (issue 11): a real https backend on loopback whose certificate a private CA
 * signed for `mcp.internal` only (not 127.0.0.1, the address the gateway dials): only a backend
 * configured with that CA and that servername reaches it. Streamable HTTP and legacy SSE both.
 */
describe('MCP proxy: an https backend with a private CA (backends[].tls)', () => {
  const { ca, key, cert } = privateCaCertificate(['mcp.internal']);
  const servernames: string[] = [];
  let server: Server;
  let gateway: ProxyHarness;

  before(async () => {
    server = createServer(
      {
        key,
        cert,
        SNICallback: (servername, callback) => {
          servernames.push(servername);
          callback(null);
        },
      },
      (req, res) => {
        req.resume();
        if (req.method === 'GET' && req.url === '/sse') {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('event: endpoint\ndata: /message?sessionId=s1\n\n');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: {} }));
      },
    );
    server.on('tlsClientError', () => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    gateway = await startProxyHarness({
      backends: [
        { name: 'trusted', path: '/trusted/mcp', url: `${origin}/mcp`, sseUrl: `${origin}/sse`, tls: { ca, servername: 'mcp.internal' } },
        { name: 'untrusted', path: '/untrusted/mcp', url: `${origin}/mcp`, sseUrl: `${origin}/sse` },
        { name: 'no-servername', path: '/no-servername/mcp', url: `${origin}/mcp`, tls: { ca } },
        { name: 'wrong-servername', path: '/wrong-servername/mcp', url: `${origin}/mcp`, tls: { ca, servername: 'other.internal' } },
      ],
    });
  });
  after(async () => {
    await gateway.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const call = async (name: string, method: 'POST' | 'GET' = 'POST') =>
    fetch(`${gateway.url}/${name}/${method === 'POST' ? 'mcp' : 'mcp/sse'}`, {
      method,
      headers: {
        authorization: `Bearer ${await gateway.tokenFor('alice', name)}`,
        accept: method === 'POST' ? ACCEPT : 'text/event-stream',
        ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
      },
      ...(method === 'POST' ? { body: PING } : {}),
    });
  const badGateway = (message: string) => ({ jsonrpc: '2.0', error: { code: -32000, message }, id: null });

  it('with tls.ca and tls.servername the call reaches the backend, sending the servername as SNI', async () => {
    servernames.length = 0;
    const res = await call('trusted');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { jsonrpc: '2.0', id: 1, result: {} });
    assert.deepEqual(servernames, ['mcp.internal']);
  });

  it('legacy SSE (GET <path>/sse) uses the same trust', async () => {
    const res = await call('trusted', 'GET');
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const { value } = await reader.read();
    assert.match(new TextDecoder().decode(value), /^event: endpoint\ndata: http:\/\/127\.0\.0\.1:\d+\/trusted\/mcp\/message\?sessionId=/);
    await reader.cancel();
  });

  it('without tls the system CAs do not trust it: 502 naming the failed check', async () => {
    const res = await call('untrusted');
    assert.equal(res.status, 502);
    assert.deepEqual(await res.json(), badGateway("Bad Gateway: backend untrusted's TLS certificate is not trusted (UNABLE_TO_VERIFY_LEAF_SIGNATURE)"));
    const sse = await call('untrusted', 'GET');
    assert.equal(sse.status, 502);
    assert.deepEqual(await sse.json(), badGateway("Bad Gateway: backend untrusted's TLS certificate is not trusted (UNABLE_TO_VERIFY_LEAF_SIGNATURE)"));
  });

  for (const name of ['no-servername', 'wrong-servername']) {
    it(`a trusted certificate for another name is refused: ${name}`, async () => {
      const res = await call(name);
      assert.equal(res.status, 502);
      assert.deepEqual(await res.json(), badGateway(`Bad Gateway: backend ${name}'s TLS certificate is not trusted (ERR_TLS_CERT_ALTNAME_INVALID)`));
    });
  }
});
