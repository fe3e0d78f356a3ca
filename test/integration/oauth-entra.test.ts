import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { ENTRA_TEST_TENANT, type EntraShapedIdp, entraError, type InjectedFailure, startEntraShapedIdp } from '../support/entra-shaped-idp.ts';
import { type Harness, startHarness } from '../support/gateway-harness.ts';
import { freePort } from '../support/ports.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

/** The SDK's auth flow through the gateway with the `entra` adapter, proving DESIGN §6 on the wire. */
describe('sign-in through the entra adapter (Entra-shaped oidc-provider)', () => {
  let idp: EntraShapedIdp;
  let gw: Harness;
  before(async () => {
    const port = await freePort();
    idp = await startEntraShapedIdp({
      client: { clientId: 'gateway-app', clientSecret: 'gateway-secret', redirectUris: [`http://localhost:${port}/callback`] },
    });
    gw = await startHarness({
      port,
      upstream: {
        entra: {
          tenantId: ENTRA_TEST_TENANT,
          clientId: 'gateway-app',
          clientSecret: 'gateway-secret',
          authorityHost: idp.authorityHost,
          scopes: ['openid', 'profile', 'email', 'offline_access'],
        },
      },
    });
  });
  after(async () => {
    await gw.close();
    await idp.close();
  });

  it('signs in, refreshes, and never sends resource or prompt=consent upstream', async () => {
    const provider = new HeadlessOAuthProvider({ login: 'adele@contoso.test', password: 'correct horse' });
    assert.equal(await auth(provider, { serverUrl: gw.mcpUrl }), 'REDIRECT');
    assert.equal(await auth(provider, { serverUrl: gw.mcpUrl, authorizationCode: provider.authorizationCode! }), 'AUTHORIZED');
    const record = await gw.ctx.grants.validateAccessToken(provider.tokens()!.access_token);
    assert.equal(record?.user.tenantId, ENTRA_TEST_TENANT);
    assert.equal(record?.user.objectId, '8f3c2a1e-5b7d-4e9f-a1c3-2d4e6f8a0b1c');
    assert.equal(record?.userKey, `${ENTRA_TEST_TENANT}|8f3c2a1e-5b7d-4e9f-a1c3-2d4e6f8a0b1c`);
    assert.deepEqual(record?.user.roles, ['Snippets.Write']);
    assert.equal(record?.user.issuer, `${idp.authorityHost}/${ENTRA_TEST_TENANT}/v2.0`);

    assert.equal(await auth(provider, { serverUrl: gw.mcpUrl }), 'AUTHORIZED', 'refresh');

    assert.equal(idp.authorizeRequests.length, 1);
    const authorize = idp.authorizeRequests[0]!;
    assert.equal(authorize.has('resource'), false, 'AADSTS9010010: resource never forwarded');
    assert.notEqual(authorize.get('prompt'), 'consent');
    assert.ok(authorize.get('scope')!.split(' ').includes('offline_access'));
    assert.equal(authorize.get('code_challenge_method'), 'S256');
    assert.equal(authorize.get('client_id'), 'gateway-app');

    const grants = idp.tokenRequests.map((body) => body.get('grant_type'));
    assert.deepEqual(grants, ['authorization_code', 'refresh_token']);
    for (const body of idp.tokenRequests) assert.equal(body.has('resource'), false);
    const refresh = idp.tokenRequests[1]!;
    assert.equal(refresh.get('scope'), authorize.get('scope'), 'stored scopes replayed on refresh');
  });

  /** Signs a new SDK client in through the gateway; its tokens and a refresh at the gateway's /token. */
  async function signedInClient() {
    const provider = new HeadlessOAuthProvider({ login: 'adele@contoso.test', password: 'correct horse' });
    assert.equal(await auth(provider, { serverUrl: gw.mcpUrl }), 'REDIRECT');
    assert.equal(await auth(provider, { serverUrl: gw.mcpUrl, authorizationCode: provider.authorizationCode! }), 'AUTHORIZED');
    const clientId = provider.clientInformation()!.client_id;
    const refresh = async (refreshToken: string) => {
      const response = await fetch(`${gw.url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId }),
      });
      return { status: response.status, body: (await response.json()) as Record<string, string> };
    };
    return { provider, tokens: provider.tokens()!, refresh };
  }

  it('an unavailable or misconfigured Entra answers 503 at the gateway and the old refresh token keeps working', async () => {
    const { tokens, refresh } = await signedInClient();
    const failures: InjectedFailure[] = [
      { status: 500, body: entraError('server_error', 90033) },
      { status: 429, body: entraError('invalid_request', 50196), headers: { 'retry-after': '5' } },
      { status: 502, body: '<html><body>Bad Gateway</body></html>' },
      { status: 401, body: entraError('invalid_client', 7000222) },
      { status: 400, body: entraError('invalid_scope', 70011) },
    ];
    for (const failure of failures) {
      idp.failNextTokenRequests(failure);
      const answer = await refresh(tokens.refresh_token!);
      assert.equal(answer.status, 503, JSON.stringify(failure.body));
      assert.equal(answer.body['error'], 'temporarily_unavailable');
    }
    const renewed = await refresh(tokens.refresh_token!);
    assert.equal(renewed.status, 200, JSON.stringify(renewed.body));
    assert.ok(await gw.ctx.grants.validateAccessToken(renewed.body['access_token']!));
  });

  it('a refresh Entra refuses for the user (invalid_grant AADSTS700082) ends the grant at the gateway', async () => {
    const { tokens, refresh } = await signedInClient();
    idp.failNextTokenRequests({ status: 400, body: entraError('invalid_grant', 700082) });
    const refused = await refresh(tokens.refresh_token!);
    assert.equal(refused.status, 400);
    assert.equal(refused.body['error'], 'invalid_grant');
    assert.equal(await gw.ctx.grants.validateAccessToken(tokens.access_token), undefined);
    assert.equal((await refresh(tokens.refresh_token!)).body['error'], 'invalid_grant');
  });
});
