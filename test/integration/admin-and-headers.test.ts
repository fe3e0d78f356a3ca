import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness } from '../support/gateway-harness.ts';

describe('admin listener: /metrics and /readyz off the public listener', () => {
  let gateway: Harness;
  before(async () => {
    gateway = await startHarness();
  });
  after(async () => {
    await gateway.close();
  });

  for (const path of ['/metrics', '/readyz']) {
    it(`${path} answers 404 on the public listener`, async () => {
      const response = await fetch(`${gateway.url}${path}`);
      assert.equal(response.status, 404);
      assert.deepEqual(await response.json(), { error: 'not_found', error_description: `no route for GET ${path}` });
    });
  }

  it('/readyz answers on the admin listener (store and IdP reachable)', async () => {
    assert.notEqual(gateway.adminUrl, gateway.url);
    const response = await fetch(`${gateway.adminUrl}/readyz`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: 'ready', store: 'ok', idp: 'ok' });
  });

  it('/metrics on the admin listener counts the public listener’s requests', async () => {
    await fetch(`${gateway.url}/.well-known/oauth-authorization-server`);
    const response = await fetch(`${gateway.adminUrl}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(await response.text(), /mcpgw_http_requests_total\{route="\/\.well-known\/oauth-authorization-server",method="GET",status="200"\} 1/);
  });

  it('/healthz stays public (and answers on the admin listener too)', async () => {
    for (const base of [gateway.url, gateway.adminUrl]) {
      const response = await fetch(`${base}/healthz`);
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { status: 'ok' });
    }
  });
});

describe('security headers', () => {
  let gateway: Harness;
  let https: Harness;
  before(async () => {
    gateway = await startHarness();
    // loadConfig accepts an https publicUrl while the gateway itself listens on http loopback (TLS ends in front).
    https = await startHarness({ config: { publicUrl: 'https://gateway.example' } });
  });
  after(async () => {
    await gateway.close();
    await https.close();
  });

  const requests: [string, (base: string) => Promise<Response>, number][] = [
    ['an OAuth JSON answer', (base) => fetch(`${base}/.well-known/oauth-authorization-server`), 200],
    ['an OAuth error', (base) => fetch(`${base}/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'nope' }) }), 401],
    ['a page', (base) => fetch(`${base}/authorize`, { headers: { accept: 'text/html' } }), 400],
    ['an /mcp 401 (raw route)', (base) => fetch(`${base}/mcp`, { method: 'POST', headers: { host: '127.0.0.1' } }), 401],
    ['a 404', (base) => fetch(`${base}/nowhere`), 404],
  ];

  for (const [what, send, status] of requests) {
    it(`${what} carries X-Content-Type-Options: nosniff, and no HSTS on an http publicUrl`, async () => {
      const response = await send(gateway.url);
      assert.equal(response.status, status);
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(response.headers.get('strict-transport-security'), null);
    });

    it(`${what} carries Strict-Transport-Security when publicUrl is https (RFC 6797)`, async () => {
      const response = await send(https.url);
      assert.equal(response.status, status);
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(response.headers.get('strict-transport-security'), 'max-age=31536000');
    });
  }

  it('the admin listener’s answers carry nosniff too', async () => {
    const response = await fetch(`${gateway.adminUrl}/metrics`);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
  });
});
