import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { keys } from '../../src/oauth/keys.ts';
import { RedisStore } from '../../src/store/redis.ts';
import { type DownstreamBackend, startDownstreamBackend } from '../support/downstream-backend.ts';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { type EntraDownstream, entraUpstream, startEntraDownstream, startGatewayAppIdp } from '../support/entra-gateway.ts';
import { ENTRA_TEST_TENANT, type EntraShapedIdp, GATEWAY_API_SCOPE, SNIPPETS_API_SCOPE } from '../support/entra-shaped-idp.ts';
import { type FakeGraph, startFakeGraph } from '../support/fake-graph.ts';
import { type Harness, startHarness } from '../support/gateway-harness.ts';
import { freePort } from '../support/ports.ts';
import { type RunningRedis, startRedis } from '../support/redis-server.ts';
import { connectSignedIn, sharedSecrets } from '../support/scale-cluster.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

const GRAPH_USER_READ = 'https://graph.microsoft.com/User.Read';
const ADELE = { login: 'adele@contoso.test', password: 'correct horse' };
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const BACKEND_SECRET = 'backend-secret-value';
const ADELE_KEY = `${ENTRA_TEST_TENANT}|8f3c2a1e-5b7d-4e9f-a1c3-2d4e6f8a0b1c`;

function textOf(result: Awaited<ReturnType<Client['callTool']>>): string {
  return (result.content as { type: string; text: string }[])[0]!.text;
}

/** Token requests the look-alike received for `scope` with `grantType`. */
function requestsFor(idp: EntraShapedIdp, grantType: string, scope: string): URLSearchParams[] {
  return idp.tokenRequests.filter((b) => b.get('grant_type') === grantType && b.get('scope') === scope);
}

describe('downstream tokens pushed to and pulled by a backend (Entra refresh for another resource)', () => {
  let idp: EntraShapedIdp;
  let graph: FakeGraph;
  let backend: DownstreamBackend;
  let gw: Harness;
  let provider: HeadlessOAuthProvider;
  let client: Client;
  let chain: EntraDownstream;

  before(async () => {
    chain = await startEntraDownstream({
      pull: { clientId: 'graph-tools-backend', secret: BACKEND_SECRET, resource: 'https://graph.microsoft.com' },
      gateway: ({ backend }) => ({
        config: {
          clients: [
            { clientId: 'graph-tools-backend', secret: BACKEND_SECRET, grantTypes: [TOKEN_EXCHANGE] },
            { clientId: 'other-backend', secret: BACKEND_SECRET, grantTypes: [TOKEN_EXCHANGE] },
          ],
        },
        backends: [
          {
            name: 'graph-tools',
            path: '/mcp',
            url: backend.mcpUrl,
            tokenExchange: { clientIds: ['graph-tools-backend'] },
            downstreamTokens: [
              { scopes: [GRAPH_USER_READ], header: 'x-graph-token', tools: ['whoami'] },
              { scopes: [SNIPPETS_API_SCOPE], header: 'x-snippets-token', tools: ['echo_plain'] },
            ],
          },
        ],
      }),
    });
    ({ idp, graph, backend, gw } = chain);
    provider = new HeadlessOAuthProvider(ADELE);
    client = await connectSignedIn(gw.mcpUrl, provider);
  });
  after(async () => {
    await client?.close();
    await chain?.close();
  });

  it('the backend calls Graph with the token pushed for whoami; Graph verifies it; the client never held it', async () => {
    const before = backend.requests.length;
    assert.equal(textOf(await client.callTool({ name: 'whoami', arguments: {} })), 'graph says: Adele Vance');
    const pushed = backend.requests.slice(before).map((h) => h['x-graph-token']).filter(Boolean);
    assert.equal(pushed.length, 1, 'pushed with tools/call whoami only');
    assert.equal(pushed[0], `Bearer ${graph.tokens.at(-1)}`, 'the token Graph verified is the one pushed');
    const exchanges = requestsFor(idp, 'refresh_token', GRAPH_USER_READ);
    assert.equal(exchanges.length, 1);
    assert.equal(exchanges[0]!.has('resource'), false, 'AADSTS9010010: scopes, never resource');
    // No token passthrough: the client's gateway token reaches no backend, in any header.
    const clientToken = provider.tokens()!.access_token;
    for (const headers of backend.requests) {
      assert.equal(headers.authorization, undefined);
      for (const value of Object.values(headers)) assert.ok(!String(value).includes(clientToken));
    }
    // …and the pushed token is not one the client ever received.
    assert.notEqual(graph.tokens.at(-1), clientToken);
  });

  it('a second call is served from the sealed cache: no second token request', async () => {
    assert.equal(textOf(await client.callTool({ name: 'whoami', arguments: {} })), 'graph says: Adele Vance');
    assert.equal(requestsFor(idp, 'refresh_token', GRAPH_USER_READ).length, 1, 'cache hit');
    assert.equal(graph.tokens.at(-1), graph.tokens.at(-2), 'the same token again');
    const cached = await gw.ctx.store.get<{ keyId: string; sealed: string }>(keys.downstreamToken(ADELE_KEY, [GRAPH_USER_READ]));
    assert.equal(cached?.keyId, 'test-1');
    assert.ok(!JSON.stringify(cached).includes(graph.tokens.at(-1)!.split('.')[1]!), 'sealed: the Store holds no readable token');
  });

  it('a tool not listed gets no downstream token', async () => {
    await client.listTools();
    const last = backend.requests.at(-1)!;
    assert.equal(last['x-graph-token'], undefined);
    assert.equal(last['x-snippets-token'], undefined);
  });

  it('consent_required (AADSTS65001) and interaction_required become a clear error naming the scope; nothing reaches the backend', async () => {
    const cases = [
      { refusal: 'consent_required' as const, words: /has not consented to api:\/\/3f0e5c2a-snippets\/Snippets\.Read.*\(consent_required\)/ },
      { refusal: 'interaction_required' as const, words: /sign in interactively.*api:\/\/3f0e5c2a-snippets\/Snippets\.Read \(interaction_required\)/ },
    ];
    for (const { refusal, words } of cases) {
      idp.withholdConsent(SNIPPETS_API_SCOPE, refusal);
      const before = backend.requests.length;
      await assert.rejects(client.callTool({ name: 'echo_plain', arguments: {} }), (error: Error) => {
        assert.match(error.message, /^MCP error -32000: Forbidden: backend graph-tools needs a token for api:\/\/3f0e5c2a-snippets\/Snippets\.Read: /);
        assert.match(error.message, words);
        return true;
      });
      assert.equal(backend.requests.length, before, 'the backend was not called');
      const answered = idp.tokenResponses.at(-1)!;
      assert.equal(answered.body['error'], refusal === 'consent_required' ? 'invalid_grant' : 'interaction_required');
    }
    idp.withholdConsent(SNIPPETS_API_SCOPE, undefined);
    assert.equal(textOf(await client.callTool({ name: 'echo_plain', arguments: {} })), 'plain');
    assert.match(String(backend.requests.at(-1)!['x-snippets-token']), /^Bearer ey/);
  });

  it('a backend pulls its token by RFC 8693 token exchange with the identity assertion it received', async () => {
    const exchangesBefore = requestsFor(idp, 'refresh_token', GRAPH_USER_READ).length;
    assert.equal(textOf(await client.callTool({ name: 'whoami_pulled', arguments: {} })), 'graph says: Adele Vance');
    assert.equal(requestsFor(idp, 'refresh_token', GRAPH_USER_READ).length, exchangesBefore, 'the cached token, shared with the push');
    const assertion = String(backend.requests.at(-1)!['x-mcp-identity']);
    const [, payload] = assertion.split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(claims['aud'], gw.mcpUrl);
    assert.equal(typeof claims['sid'], 'string', 'names the grant it can be exchanged against');
  });

  it('token exchange errors are precise (RFC 8693 §2.2.2, RFC 6749 §5.2)', async () => {
    const assertion = String(backend.requests.findLast((h) => h['x-mcp-identity'])!['x-mcp-identity']);
    const exchange = async (fields: Record<string, string>, clientId = 'graph-tools-backend', secret = BACKEND_SECRET) => {
      const response = await fetch(`${gw.url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, subject_token: assertion, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', ...fields }),
      });
      assert.equal(response.headers.get('cache-control'), 'no-store');
      return { status: response.status, body: (await response.json()) as Record<string, string> };
    };
    const ok = await exchange({ resource: 'https://graph.microsoft.com' });
    assert.equal(ok.status, 200);
    assert.equal(ok.body['issued_token_type'], 'urn:ietf:params:oauth:token-type:access_token');
    assert.equal(ok.body['token_type'], 'Bearer');
    assert.equal(ok.body['scope'], GRAPH_USER_READ);
    assert.equal(ok.body['access_token'], graph.tokens.at(-1));
    assert.equal((await exchange({ scope: SNIPPETS_API_SCOPE })).body['scope'], SNIPPETS_API_SCOPE);
    const cases: [string, Promise<{ status: number; body: Record<string, string> }>, number, string, RegExp][] = [
      ['wrong subject_token_type', exchange({ subject_token_type: 'urn:ietf:params:oauth:token-type:access_token' }), 400, 'invalid_request', /subject_token_type must be/],
      ['a forged assertion', exchange({ subject_token: `${assertion.slice(0, -4)}AAAA` }), 400, 'invalid_request', /not an identity assertion for this backend: signature/],
      ['a resource not configured', exchange({ resource: 'https://management.azure.com' }), 400, 'invalid_target', /may not get a token for https:\/\/management\.azure\.com/],
      ['a scope not configured', exchange({ scope: 'https://graph.microsoft.com/Mail.Read' }), 400, 'invalid_scope', /Mail\.Read/],
      ['two tokens, none named', exchange({}), 400, 'invalid_request', /name one with resource, audience or scope/],
      ['another backend', exchange({ resource: 'https://graph.microsoft.com' }, 'other-backend'), 400, 'unauthorized_client', /no backend that may exchange/],
      ['a wrong secret', exchange({ resource: 'https://graph.microsoft.com' }, 'graph-tools-backend', 'nope'), 401, 'invalid_client', /client authentication failed/],
    ];
    for (const [name, pending, status, error, description] of cases) {
      const answer = await pending;
      assert.deepEqual([answer.status, answer.body['error']], [status, error], name);
      assert.match(answer.body['error_description']!, description, name);
    }
  });

  it("the client's own gateway token is refused as a subject_token", async () => {
    const response = await fetch(`${gw.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`graph-tools-backend:${BACKEND_SECRET}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, subject_token: provider.tokens()!.access_token, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }),
    });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as { error: string }).error, 'invalid_request');
  });
});

describe("downstream tokens by Entra on-behalf-of, the gateway authenticated by its managed identity's federated credential", () => {
  const MI_ISSUER = `https://login.microsoftonline.com/${ENTRA_TEST_TENANT}/v2.0`;
  const MI_CLIENT_ID = '6e2a1f0c-9b3d-4c8e-a7f5-1d2c3b4a5e6f';
  const MI_PRINCIPAL_ID = 'c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f';
  let idp: EntraShapedIdp;
  let graph: FakeGraph;
  let gw: Harness;
  let client: Client;
  let chain: EntraDownstream;
  const federatedAssertions: string[] = [];

  before(async () => {
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'mi-key', alg: 'RS256', use: 'sig' };
    chain = await startEntraDownstream({
      // The app's federated credential replaces its secret (the look-alike then takes no secret).
      idp: {
        federatedCredentials: [{ issuer: MI_ISSUER, subject: MI_PRINCIPAL_ID, audience: 'api://AzureADTokenExchange', jwks: { keys: [jwk] } }],
        appIdUris: ['api://gateway-app'],
      },
      gateway: ({ idp, backend }) => ({
        backends: [
          { name: 'graph-tools', path: '/mcp', url: backend.mcpUrl, downstreamTokens: [{ scopes: [GRAPH_USER_READ], via: 'on-behalf-of', header: 'x-graph-token' }] },
        ],
        upstream: {
          entra: {
            tenantId: ENTRA_TEST_TENANT,
            clientId: 'gateway-app',
            managedIdentity: { clientId: MI_CLIENT_ID, audience: 'api://AzureADTokenExchange' },
            authorityHost: idp.authorityHost,
            scopes: ['openid', 'profile', 'offline_access', GATEWAY_API_SCOPE],
          },
        },
        // What Azure's managed identity endpoint gives for api://AzureADTokenExchange.
        getFederatedAssertion: async () => {
          const token = await new SignJWT({ azp: MI_CLIENT_ID, oid: MI_PRINCIPAL_ID, tid: ENTRA_TEST_TENANT, idtyp: 'app', ver: '2.0' })
            .setProtectedHeader({ alg: 'RS256', kid: 'mi-key', typ: 'JWT' })
            .setIssuer(MI_ISSUER)
            .setSubject(MI_PRINCIPAL_ID)
            .setAudience('api://AzureADTokenExchange')
            .setIssuedAt()
            .setExpirationTime('1h')
            .sign(privateKey);
          federatedAssertions.push(token);
          return token;
        },
      }),
    });
    ({ idp, graph, gw } = chain);
    client = await connectSignedIn(gw.mcpUrl, new HeadlessOAuthProvider(ADELE));
  });
  after(async () => {
    await client?.close();
    await chain?.close();
  });

  it("the backend's Graph call works with a token Entra issued on behalf of the user's token for the gateway's API", async () => {
    assert.equal(textOf(await client.callTool({ name: 'whoami', arguments: {} })), 'graph says: Adele Vance');
    const obo = requestsFor(idp, 'urn:ietf:params:oauth:grant-type:jwt-bearer', GRAPH_USER_READ);
    assert.equal(obo.length, 1);
    assert.equal(obo[0]!.get('requested_token_use'), 'on_behalf_of');
    assert.equal(obo[0]!.get('client_assertion'), federatedAssertions.at(-1), "the managed identity's federated credential authenticates the OBO request");
    const [, payload] = obo[0]!.get('assertion')!.split('.');
    assert.equal(JSON.parse(Buffer.from(payload!, 'base64url').toString()).aud, 'api://gateway-app', "the user's token for the gateway's API is the assertion");
    assert.equal(textOf(await client.callTool({ name: 'whoami', arguments: {} })), 'graph says: Adele Vance');
    assert.equal(requestsFor(idp, 'urn:ietf:params:oauth:grant-type:jwt-bearer', GRAPH_USER_READ).length, 1, 'cache hit');
  });

  it('the look-alike refuses OBO as Entra does: without requested_token_use, and with an assertion for another audience', async () => {
    const obo = requestsFor(idp, 'urn:ietf:params:oauth:grant-type:jwt-bearer', GRAPH_USER_READ)[0]!;
    const send = async (change: Record<string, string | undefined>) => {
      const form = new URLSearchParams(obo);
      form.set('client_assertion', federatedAssertions.at(-1)!);
      for (const [name, value] of Object.entries(change)) value === undefined ? form.delete(name) : form.set(name, value);
      const response = await fetch(`${idp.authorityHost}/${ENTRA_TEST_TENANT}/oauth2/v2.0/token`, { method: 'POST', body: form });
      return { status: response.status, body: (await response.json()) as { error: string; error_codes: number[] } };
    };
    assert.equal((await send({})).status, 200);
    const noUse = await send({ requested_token_use: undefined });
    assert.deepEqual([noUse.status, noUse.body.error, noUse.body.error_codes[0]], [400, 'invalid_request', 900144]);
    // Graph's token (aud https://graph.microsoft.com) is not a token for this app.
    const otherAudience = await send({ assertion: graph.tokens.at(-1)! });
    assert.deepEqual([otherAudience.status, otherAudience.body.error, otherAudience.body.error_codes[0]], [400, 'invalid_grant', 50013]);
  });

  it('consent_required on the OBO request is answered naming the scope', async () => {
    idp.withholdConsent(GRAPH_USER_READ, 'consent_required');
    await gw.ctx.store.delete(keys.downstreamToken(ADELE_KEY, [GRAPH_USER_READ]));
    await assert.rejects(client.callTool({ name: 'whoami', arguments: {} }), /backend graph-tools needs a token for https:\/\/graph\.microsoft\.com\/User\.Read: .*\(consent_required\)/);
    assert.equal(idp.tokenResponses.at(-1)!.body['suberror'], 'consent_required');
    idp.withholdConsent(GRAPH_USER_READ, undefined);
  });
});

describe('revoking the grant at /account stops token exchanges on every replica (two gateways, one real Redis)', () => {
  let redis: RunningRedis;
  let idp: EntraShapedIdp;
  let graph: FakeGraph;
  let backend: DownstreamBackend;
  const replicas: Harness[] = [];
  const stores: RedisStore[] = [];
  let provider: HeadlessOAuthProvider;
  let client: Client;

  before(async () => {
    redis = await startRedis();
    const [portA, portB] = [await freePort(), await freePort()];
    const publicUrl = `http://localhost:${portA}`;
    idp = await startGatewayAppIdp(portA);
    graph = await startFakeGraph({ issuer: idp.accessTokenIssuer, jwksUri: idp.jwksUri });
    // The backend pulls at replica B while its calls come through replica A.
    backend = await startDownstreamBackend({
      graphUrl: graph.url,
      pull: { tokenUrl: `http://localhost:${portB}/token`, clientId: 'graph-tools-backend', secret: BACKEND_SECRET },
    });
    const secrets = sharedSecrets();
    for (const port of [portA, portB]) {
      const store = await RedisStore.connect({ url: redis.url });
      stores.push(store);
      replicas.push(
        await startHarness({
          port,
          store,
          config: { publicUrl, secrets, clients: [{ clientId: 'graph-tools-backend', secret: BACKEND_SECRET, grantTypes: [TOKEN_EXCHANGE] }] },
          backends: [
            {
              name: 'graph-tools',
              path: '/mcp',
              url: backend.mcpUrl,
              tokenExchange: { clientIds: ['graph-tools-backend'] },
              downstreamTokens: [{ scopes: [GRAPH_USER_READ] }],
            },
          ],
          upstream: entraUpstream(idp),
        }),
      );
    }
    provider = new HeadlessOAuthProvider(ADELE);
    client = await connectSignedIn(`${publicUrl}/mcp`, provider);
  });
  after(async () => {
    await client?.close();
    for (const gw of replicas) await gw.close();
    for (const store of stores) await store.close();
    await backend?.close();
    await graph?.close();
    await idp?.close();
    await redis?.stop();
  });

  it('exchanges work on both replicas, then fail on both as soon as the user revokes at /account', async () => {
    assert.equal(textOf(await client.callTool({ name: 'whoami_pulled', arguments: {} })), 'graph says: Adele Vance');
    const assertion = String(backend.requests.at(-1)!['x-mcp-identity']);
    const exchangeAt = async (gw: Harness) => {
      const response = await fetch(`${gw.url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`graph-tools-backend:${BACKEND_SECRET}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, subject_token: assertion, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }),
      });
      return { status: response.status, body: (await response.json()) as Record<string, string> };
    };
    for (const gw of replicas) assert.equal((await exchangeAt(gw)).status, 200);
    assert.equal(requestsFor(idp, 'refresh_token', GRAPH_USER_READ).length, 1, 'one Entra request: both replicas read the one sealed cache entry');

    const account = await provider.browser.get(`${replicas[0]!.publicUrl}/account`);
    assert.equal(account.status, 200);
    await provider.browser.submitForm(account, 'action="/account/revoke"', { client_id: provider.clientInformation()!.client_id });

    // Nothing about grants is cached in a replica's memory for exchanges: the bound is the Store read.
    for (const gw of replicas) {
      const refused = await exchangeAt(gw);
      assert.deepEqual([refused.status, refused.body['error'], refused.body['error_description']], [400, 'invalid_request', "the user's grant has expired or was revoked"]);
    }
  });
});
