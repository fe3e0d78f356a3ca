import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness } from '../support/gateway-harness.ts';

/** CORS for browser-based MCP clients: the OAuth endpoints they call answer any origin, without credentials. */
describe('CORS on the metadata, registration, token and revocation endpoints', () => {
  const origin = 'http://127.0.0.1:5173';
  let gw: Harness;
  before(async () => {
    gw = await startHarness();
  });
  after(() => gw.close());

  for (const path of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource', '/.well-known/oauth-authorization-server', '/.well-known/jwks.json']) {
    it(`GET ${path} from another origin is readable (Access-Control-Allow-Origin: *)`, async () => {
      const response = await fetch(`${gw.publicUrl}${path}`, { headers: { origin } });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('access-control-allow-origin'), '*');
      assert.equal(response.headers.get('access-control-allow-credentials'), null);
    });
  }

  for (const path of ['/register', '/token', '/revoke']) {
    it(`OPTIONS ${path} (preflight) answers 204 allowing POST with content-type and authorization`, async () => {
      const response = await fetch(`${gw.publicUrl}${path}`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });
      assert.equal(response.status, 204);
      assert.equal(response.headers.get('access-control-allow-origin'), '*');
      assert.equal(response.headers.get('access-control-allow-methods'), 'GET, POST, OPTIONS');
      assert.equal(response.headers.get('access-control-allow-headers'), 'authorization, content-type, mcp-protocol-version');
      assert.equal(response.headers.get('access-control-allow-credentials'), null);
    });
  }

  it('an OAuth error from /token is readable cross-origin too', async () => {
    const response = await fetch(`${gw.publicUrl}/token`, {
      method: 'POST',
      headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=authorization_code&client_id=nobody',
    });
    assert.equal(response.status, 401);
    assert.equal(response.headers.get('access-control-allow-origin'), '*');
    assert.equal(((await response.json()) as { error: string }).error, 'invalid_client');
  });

  it('the browser pages (/authorize, /account) and the MCP endpoint of an unlisted origin get no CORS', async () => {
    for (const path of ['/authorize?client_id=x', '/account']) {
      const response = await fetch(`${gw.publicUrl}${path}`, { headers: { origin }, redirect: 'manual' });
      assert.equal(response.headers.get('access-control-allow-origin'), null, path);
    }
    const mcp = await fetch(`${gw.mcpUrl}`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST' } });
    assert.equal(mcp.status, 403);
  });
});
