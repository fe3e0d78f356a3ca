import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { type Harness, startHarness } from '../support/gateway-harness.ts';
import { authorizeUrl, CLIENT_REDIRECT, defaultAuthorizeParams, pkce, postForm } from '../support/oauth-steps.ts';
import { freePort } from '../support/ports.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';
import { selfSignedCertificate } from '../support/tls.ts';

const NOT_FETCHED = 'client metadata document could not be fetched';

/** Client ID Metadata Documents served over real TLS on loopback. */
describe('client ID metadata documents', () => {
  const tls = selfSignedCertificate();
  let server: Server;
  let origin: string;
  const fetches = new Map<string, number>();

  before(async () => {
    server = createServer({ key: tls.key, cert: tls.cert }, (request, response) => {
      const path = request.url ?? '/';
      fetches.set(path, (fetches.get(path) ?? 0) + 1);
      const self = `${origin}${path}`;
      const doc = { client_id: self, client_name: 'Metadata Doc Client', redirect_uris: [CLIENT_REDIRECT], token_endpoint_auth_method: 'none' };
      if (path === '/good.json') return response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=600' }).end(JSON.stringify(doc));
      if (path === '/mismatch.json') return response.writeHead(200).end(JSON.stringify({ ...doc, client_id: `${origin}/other.json` }));
      if (path === '/big.json') return response.writeHead(200).end(JSON.stringify({ ...doc, pad: 'x'.repeat(70 * 1024) }));
      if (path === '/slow.json') return void setTimeout(() => response.writeHead(200).end(JSON.stringify(doc)), 1500);
      if (path === '/not-json.json') return response.writeHead(200).end('<html>');
      response.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `https://localhost:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  describe('dev mode (loopback hosts allowed)', () => {
    let gw: Harness;
    before(async () => {
      gw = await startHarness({
        config: { clientRegistration: { metadataDocuments: { timeoutMs: 500, extraCa: tls.cert } } },
      });
    });
    after(() => gw.close());

    it('the SDK signs in with a URL client_id; the document is fetched once and cached', async () => {
      const provider = new HeadlessOAuthProvider({ login: 'alice', password: 'alice-password' }, { clientMetadataUrl: `${origin}/good.json` });
      assert.equal(await auth(provider, { serverUrl: gw.mcpUrl }), 'REDIRECT');
      assert.equal(provider.clientInformation()?.client_id, `${origin}/good.json`);
      assert.ok(provider.pages.some((p) => p.body.includes('Metadata Doc Client')));
      assert.equal(await auth(provider, { serverUrl: gw.mcpUrl, authorizationCode: provider.authorizationCode! }), 'AUTHORIZED');
      assert.match(provider.tokens()!.access_token, /^mcpgw_at_/);
      assert.equal(await auth(provider, { serverUrl: gw.mcpUrl }), 'AUTHORIZED', 'refresh with the URL client_id');
      assert.equal(fetches.get('/good.json'), 1);
    });

    // The document's own content is described precisely; how the fetch failed is not (it would
    // describe our network to an unauthenticated caller).
    const refused: [string, string][] = [
      ['/mismatch.json', 'invalid_client: client metadata document client_id does not equal its URL'],
      ['/big.json', `invalid_client: ${NOT_FETCHED}`],
      ['/slow.json', `invalid_client: ${NOT_FETCHED}`],
      ['/not-json.json', 'invalid_client: client metadata document is not valid JSON'],
      ['/missing.json', `invalid_client: ${NOT_FETCHED}`],
    ];
    for (const [path, message] of refused) {
      it(`${path} is refused with an error page`, async () => {
        const clientId = `${origin}${path}`;
        const response = await fetch(authorizeUrl(gw.publicUrl, defaultAuthorizeParams(gw.publicUrl, clientId, pkce().challenge)), { redirect: 'manual' });
        assert.equal(response.status, 400);
        assert.equal(response.headers.get('location'), null);
        const body = await response.text();
        assert.ok(body.includes(message.replace(/"/g, '&#34;')), message);
        assert.ok(!body.includes(`${NOT_FETCHED}:`), 'no fetch detail appended');
      });
    }

    it('a connect error is answered with the generic invalid_client, at /authorize and from the failure cache at /token', async () => {
      const clientId = `https://127.0.0.1:${await freePort()}/client.json`;
      const page = await fetch(authorizeUrl(gw.publicUrl, defaultAuthorizeParams(gw.publicUrl, clientId, pkce().challenge)), { redirect: 'manual' });
      assert.equal(page.status, 400);
      const body = await page.text();
      assert.ok(body.includes(`invalid_client: ${NOT_FETCHED}</p>`), body);
      assert.ok(!/ECONNREFUSED|connect /.test(body));
      const token = await postForm(gw.publicUrl, '/token', { grant_type: 'refresh_token', refresh_token: 'x', client_id: clientId });
      assert.equal(token.status, 401);
      assert.deepEqual(await token.json(), { error: 'invalid_client', error_description: NOT_FETCHED });
    });
  });

  describe('production rules (no private addresses, https only)', () => {
    let gw: Harness;
    before(async () => {
      gw = await startHarness({
        config: { clientRegistration: { metadataDocuments: { allowInsecure: false, timeoutMs: 500, extraCa: tls.cert } } },
      });
    });
    after(() => gw.close());

    const refused: [string, (o: string) => string][] = [
      ['a loopback IP', (o) => o.replace('localhost', '127.0.0.1')],
      ['a name resolving to loopback', (o) => o],
      ['a link-local IP', () => 'https://169.254.169.254'],
      ['a private IPv6', () => 'https://[fd00::1]'],
      ['plain http', (o) => o.replace('https:', 'http:')],
    ];
    for (const [name, host] of refused) {
      it(`${name} is refused, with the generic reason only`, async () => {
        const before = fetches.get('/good.json') ?? 0;
        const clientId = `${host(origin)}/good.json`;
        const response = await fetch(authorizeUrl(gw.publicUrl, defaultAuthorizeParams(gw.publicUrl, clientId, pkce().challenge)), { redirect: 'manual' });
        assert.equal(response.status, 400);
        const body = await response.text();
        assert.ok(body.includes(`invalid_client: ${NOT_FETCHED}`));
        assert.ok(!body.includes(`${NOT_FETCHED}:`), 'no fetch detail appended');
        assert.equal(fetches.get('/good.json') ?? 0, before, 'nothing was fetched');
      });
    }
  });
});
