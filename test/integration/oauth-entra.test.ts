import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { entraUpstream, startGatewayAppIdp } from '../support/entra-gateway.ts';
import { ENTRA_TEST_TENANT, type EntraShapedIdp, entraError, type InjectedFailure } from '../support/entra-shaped-idp.ts';
import { type Harness, startHarness } from '../support/gateway-harness.ts';
import { freePort } from '../support/ports.ts';
import { type McpBackend, startMcpBackend } from '../support/mcp-backend.ts';
import { createHeadlessBrowser } from '../support/headless-browser.ts';
import { approveAndSignIn, authorizeUrl, defaultAuthorizeParams, pkce, registerClient } from '../support/oauth-steps.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

/** The SDK's auth flow through the gateway with the `entra` adapter, proving DESIGN §6 on the wire. */
describe('sign-in through the entra adapter (Entra-shaped oidc-provider)', () => {
  let idp: EntraShapedIdp;
  let gw: Harness;
  let backend: McpBackend;
  before(async () => {
    backend = await startMcpBackend();
    const port = await freePort();
    idp = await startGatewayAppIdp(port);
    gw = await startHarness({ port, backends: [{ name: 'snippets', path: '/mcp', url: backend.mcpUrl }], upstream: entraUpstream(idp) });
  });
  after(async () => {
    await gw.close();
    await idp.close();
    await backend.close();
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

  it('prompt=consent at /authorize is never sent to Entra (DESIGN §6); prompt=select_account is', async () => {
    const user = { login: 'adele@contoso.test', password: 'correct horse' };
    const clientId = await registerClient(gw.publicUrl);
    for (const [asked, sent] of [['consent', null], ['select_account', 'select_account']] as const) {
      const before = idp.authorizeRequests.length;
      const start = authorizeUrl(gw.publicUrl, { ...defaultAuthorizeParams(gw.publicUrl, clientId, pkce().challenge), prompt: asked });
      const { returnedTo } = await approveAndSignIn(createHeadlessBrowser(), start, user);
      assert.ok(returnedTo.searchParams.get('code'));
      assert.equal(idp.authorizeRequests.length, before + 1);
      assert.equal(idp.authorizeRequests.at(-1)!.get('prompt'), sent, `prompt=${asked} asked of the gateway`);
    }
  });

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

  /** The identity assertion the backend receives for an MCP request with `accessToken`, verified. */
  async function assertionSeenByBackend(accessToken: string) {
    const before = backend.requests.length;
    const response = await fetch(gw.mcpUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
      }),
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    const seen = backend.requests.slice(before);
    assert.equal(seen.length, 1);
    const jwks = createRemoteJWKSet(new URL(`${gw.url}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(String(seen[0]!.headers['x-mcp-identity']), jwks, { issuer: new URL(gw.publicUrl).origin, audience: gw.mcpUrl });
    return payload;
  }

  it("a role removed in Entra is gone from the backend's identity assertion after the client's next refresh", async () => {
    const { tokens, refresh } = await signedInClient();
    const first = await assertionSeenByBackend(tokens.access_token);
    assert.deepEqual(first['roles'], ['Snippets.Write']);
    assert.deepEqual(first['groups'], ['4d2f6a8c-1e3b-4c5d-9f7a-0b2c4d6e8f1a']);

    idp.setEntraUser('adele@contoso.test', { roles: ['Snippets.Read'], groups: [] });
    try {
      const renewed = await refresh(tokens.refresh_token!);
      assert.equal(renewed.status, 200, JSON.stringify(renewed.body));
      const after = await assertionSeenByBackend(renewed.body['access_token']!);
      assert.deepEqual(after['roles'], ['Snippets.Read']);
      assert.deepEqual(after['groups'], []);
      assert.equal(after['groups_overage'], undefined);

      // Entra's groups overage: no groups listed, and the assertion says so instead of an empty list.
      idp.setEntraUser('adele@contoso.test', { groupsOverage: true });
      const overage = await refresh(renewed.body['refresh_token']!);
      assert.equal(overage.status, 200, JSON.stringify(overage.body));
      const third = await assertionSeenByBackend(overage.body['access_token']!);
      assert.equal(third['groups'], undefined);
      assert.equal(third['groups_overage'], true);
    } finally {
      idp.setEntraUser('adele@contoso.test', {
        roles: ['Snippets.Write'],
        groups: ['4d2f6a8c-1e3b-4c5d-9f7a-0b2c4d6e8f1a'],
        groupsOverage: false,
      });
    }
  });
});
