import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { DownstreamBackend } from '../support/downstream-backend.ts';
import { type EntraDownstream, startEntraDownstream } from '../support/entra-gateway.ts';
import { ENTRA_TEST_TENANT, type EntraShapedIdp } from '../support/entra-shaped-idp.ts';
import type { FakeGraph } from '../support/fake-graph.ts';
import type { Harness } from '../support/gateway-harness.ts';
import { connectSignedIn } from '../support/scale-cluster.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_CLIENT_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const GRAPH_USER_READ = 'https://graph.microsoft.com/User.Read';
const GATEWAY_APP_URI = 'api://gateway-app';
/** The backend's managed identity: its client id (`azp`/`appid`) and its service principal's object id. */
const BACKEND_MI = '9d1e2f3a-4b5c-4d6e-8f7a-0b1c2d3e4f5a';
const BACKEND_MI_OBJECT = 'e5f4d3c2-b1a0-4f9e-8d7c-6b5a4f3e2d1c';
const OTHER_TENANT = '11111111-2222-4333-8444-555555555555';

describe('RFC 8693 pull: a backend authenticates with its managed identity (an Entra app-only token as client_assertion)', () => {
  let idp: EntraShapedIdp;
  let graph: FakeGraph;
  let backend: DownstreamBackend;
  let gw: Harness;
  let client: Client;
  let entraKeys: Server;
  let signMi: (claims?: Record<string, unknown>) => Promise<string>;
  let subjectToken: string;
  let chain: EntraDownstream;

  before(async () => {
    // What Azure's managed identity endpoint gives the backend for the gateway's app (resource api://gateway-app).
    const mi = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(mi.publicKey)), kid: 'entra-mi', alg: 'RS256', use: 'sig' };
    entraKeys = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
    await new Promise<void>((resolve) => entraKeys.listen(0, '127.0.0.1', resolve));
    signMi = (claims = {}) => {
      const now = Math.floor(Date.now() / 1000);
      const tid = (claims['tid'] as string | undefined) ?? ENTRA_TEST_TENANT;
      const payload = { iss: `${idp.authorityHost}/${tid}/v2.0`, aud: GATEWAY_APP_URI, tid, iat: now, nbf: now, exp: now + 86_399, azp: BACKEND_MI, azpacr: '2', oid: BACKEND_MI_OBJECT, sub: BACKEND_MI_OBJECT, idtyp: 'app', ver: '2.0', uti: 'x', ...claims };
      return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: 'entra-mi', typ: 'JWT' }).sign(mi.privateKey);
    };
    chain = await startEntraDownstream({
      gateway: ({ idp, backend }) => ({
        config: {
          clients: [{ clientId: 'graph-tools-backend', entraApp: { tenantId: ENTRA_TEST_TENANT, appId: BACKEND_MI }, grantTypes: [TOKEN_EXCHANGE] }],
          workloads: {
            entra: {
              tenants: [ENTRA_TEST_TENANT, OTHER_TENANT],
              audiences: [GATEWAY_APP_URI],
              authorityHost: idp.authorityHost,
              jwksUri: `http://127.0.0.1:${(entraKeys.address() as AddressInfo).port}/common/discovery/v2.0/keys`,
            },
          },
        },
        backends: [{ name: 'graph-tools', path: '/mcp', url: backend.mcpUrl, tokenExchange: { clientIds: ['graph-tools-backend'] }, downstreamTokens: [{ scopes: [GRAPH_USER_READ] }] }],
      }),
    });
    ({ idp, graph, backend, gw } = chain);
    client = await connectSignedIn(gw.mcpUrl, new HeadlessOAuthProvider({ login: 'adele@contoso.test', password: 'correct horse' }));
    await client.callTool({ name: 'echo_plain', arguments: {} });
    subjectToken = String(backend.requests.findLast((h) => h['x-mcp-identity'])!['x-mcp-identity']);
  });
  after(async () => {
    await client?.close();
    await chain?.close();
    await new Promise<void>((resolve) => entraKeys?.close(() => resolve()));
  });

  async function exchange(clientAssertion: string, fields: Record<string, string> = {}) {
    const response = await fetch(`${gw.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: TOKEN_EXCHANGE,
        subject_token: subjectToken,
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
        client_assertion_type: JWT_CLIENT_ASSERTION,
        client_assertion: clientAssertion,
        ...fields,
      }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, string> };
  }

  it("the managed identity's token authenticates the backend, named by tid + azp; Graph accepts the token it pulls", async () => {
    const answer = await exchange(await signMi());
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body['scope'], GRAPH_USER_READ);
    const me = await fetch(`${graph.url}/v1.0/me`, { headers: { authorization: `Bearer ${answer.body['access_token']}` } });
    assert.equal(((await me.json()) as { displayName: string }).displayName, 'Adele Vance');
  });

  it("or named by client_id; a token with appid (Entra's v1.0 claim) instead of azp is named by it", async () => {
    assert.equal((await exchange(await signMi(), { client_id: 'graph-tools-backend' })).status, 200);
    assert.equal((await exchange(await signMi({ azp: undefined, appid: BACKEND_MI }))).status, 200);
  });

  it('the same Entra token is accepted again for its lifetime (no single use: Entra tokens are cached and reused)', async () => {
    const token = await signMi();
    assert.equal((await exchange(token)).status, 200);
    assert.equal((await exchange(token)).status, 200);
  });

  it('refused with invalid_client: wrong tenant, wrong app, wrong audience, expired, a user token, a forged signature', async () => {
    const now = Math.floor(Date.now() / 1000);
    const cases: [string, Promise<string>, Record<string, string>, RegExp][] = [
      ['another allowed tenant', signMi({ tid: OTHER_TENANT }), { client_id: 'graph-tools-backend' }, /tenant 11111111-2222-4333-8444-555555555555 is not this client's/],
      ['a tenant not allowed', signMi({ tid: '99999999-2222-4333-8444-555555555555' }), { client_id: 'graph-tools-backend' }, /tenant 99999999-.* is not allowed/],
      ['another app, named by client_id', signMi({ azp: 'another-app' }), { client_id: 'graph-tools-backend' }, /app another-app is not this client's/],
      ['another app, named by nothing', signMi({ azp: 'another-app' }), {}, /./],
      ['a token for another resource', signMi({ aud: 'https://graph.microsoft.com' }), {}, /aud/],
      ['expired', signMi({ iat: now - 7200, nbf: now - 7200, exp: now - 3600 }), {}, /expired/],
      ['a user token (scp)', signMi({ scp: 'access_as_user', idtyp: undefined }), {}, /user token/],
      ['a forged signature', signMi().then((t) => `${t.slice(0, -6)}AAAAAA`), {}, /signature/],
    ];
    for (const [name, token, fields, description] of cases) {
      const answer = await exchange(await token, fields);
      assert.deepEqual([answer.status, answer.body['error']], [401, 'invalid_client'], name);
      assert.match(answer.body['error_description']!, description, name);
    }
    // A secret is no credential of such a client.
    const withSecret = await fetch(`${gw.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('graph-tools-backend:guess').toString('base64')}` },
      body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, subject_token: subjectToken, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }),
    });
    assert.equal(withSecret.status, 401);
    assert.match(((await withSecret.json()) as { error_description: string }).error_description, /send it as client_assertion/);
  });
});
