import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ClientCredentialsProvider, PrivateKeyJwtProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createRemoteJWKSet, exportJWK, exportPKCS8, generateKeyPair, importPKCS8, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import { createConfiguredClients } from '../../src/oauth/configured-clients.ts';
import { createEntraWorkloadGrant } from '../../src/oauth/token-entra-workload.ts';
import { type Harness, startHarness } from '../support/gateway-harness.ts';
import { type McpBackend, startMcpBackend } from '../support/mcp-backend.ts';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const OTHER_TENANT = '11111111-2222-4333-8444-555555555555';
const GATEWAY_APP = 'api://mcp-gateway';
type TokenAnswer = { status: number; body: Record<string, unknown> };

/** Callers with no person: client_credentials for configured clients, and Entra app-only tokens. */
describe('workload callers', () => {
  let backend: McpBackend;
  let gw: Harness;
  let entraKeys: Server;
  let authority: string;
  let signEntra: (claims: Record<string, unknown>) => Promise<string>;
  let jobPrivateKeyPem: string;

  before(async () => {
    backend = await startMcpBackend();
    // Entra's signing keys, on loopback (standing for {authority}/common/discovery/v2.0/keys).
    const entra = await generateKeyPair('RS256');
    const entraJwk = { ...(await exportJWK(entra.publicKey)), kid: 'entra-1', alg: 'RS256', use: 'sig' };
    const job = await generateKeyPair('ES256', { extractable: true });
    jobPrivateKeyPem = await exportPKCS8(job.privateKey);
    const jobJwk = { ...(await exportJWK(job.publicKey)), kid: 'job-1' };
    // Each JWK Set at its path; an oversized one (over the guard's 128 KiB) for both kinds of key.
    const jwkSets: Record<string, unknown> = {
      '/job/keys': { keys: [jobJwk] },
      '/oversized/keys': { keys: [entraJwk, jobJwk], padding: 'x'.repeat(200 * 1024) },
    };
    entraKeys = createServer((req, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwkSets[req.url ?? ''] ?? { keys: [entraJwk] })),
    );
    await new Promise<void>((resolve) => entraKeys.listen(0, '127.0.0.1', resolve));
    authority = `http://127.0.0.1:${(entraKeys.address() as AddressInfo).port}`;
    signEntra = (claims) => {
      const now = Math.floor(Date.now() / 1000);
      const tid = (claims['tid'] as string | undefined) ?? TENANT;
      const payload = { iss: `${authority}/${tid}/v2.0`, aud: GATEWAY_APP, tid, iat: now, exp: now + 3600, oid: 'sp-object-1', sub: 'sp-object-1', idtyp: 'app', ...claims };
      return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: 'entra-1', typ: 'JWT' }).sign(entra.privateKey);
    };
    gw = await startHarness({
      backends: [{ name: 'test', path: '/mcp', url: backend.mcpUrl, scopes: ['mcp:tools', 'mcp:admin'] }],
      config: {
        clients: [
          { clientId: 'nightly-job', name: 'Nightly job', secret: 'job-secret', grantTypes: ['client_credentials'], scopes: ['mcp:tools'], roles: ['reporter'] },
          { clientId: 'keyed-job', jwks: { keys: [jobJwk] }, grantTypes: ['client_credentials'], roles: ['indexer'] },
          { clientId: 'remote-keyed-job', jwksUri: `${authority}/job/keys`, grantTypes: ['client_credentials'] },
          { clientId: 'oversized-keys-job', jwksUri: `${authority}/oversized/keys`, grantTypes: ['client_credentials'] },
        ],
        workloads: {
          entra: { tenants: [TENANT], audiences: [GATEWAY_APP], authorityHost: authority, allowedAppIds: ['app-allowed'], requiredRoles: ['Mcp.Invoke'] },
        },
      },
    });
  });
  after(async () => {
    await gw.close();
    await backend.close();
    await new Promise<void>((resolve) => entraKeys.close(() => resolve()));
  });

  async function token(fields: Record<string, string>): Promise<TokenAnswer> {
    const response = await fetch(`${gw.publicUrl}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  /** Calls echo with the SDK and returns the identity assertion the backend received. */
  async function callAs(transport: StreamableHTTPClientTransport): Promise<JWTPayload> {
    const before = backend.requests.length;
    const client = new Client({ name: 'workload', version: '1.0.0' });
    await client.connect(transport);
    const result = await client.callTool({ name: 'echo', arguments: { text: 'job' } });
    assert.deepEqual(result.content, [{ type: 'text', text: 'job' }]);
    await client.close();
    return identityAssertion(backend.requests.slice(before).find((r) => r.headers['x-mcp-identity'])!.headers['x-mcp-identity']);
  }

  async function identityAssertion(header: unknown): Promise<JWTPayload> {
    const jwks = createRemoteJWKSet(new URL(`${gw.url}/.well-known/jwks.json`));
    return (await jwtVerify(String(header), jwks, { issuer: gw.publicUrl, audience: gw.mcpUrl })).payload;
  }

  it('the SDK ClientCredentialsProvider (client_secret_basic) gets a token and calls tools; the backend is told it is a workload', async () => {
    const provider = new ClientCredentialsProvider({ clientId: 'nightly-job', clientSecret: 'job-secret', expectedIssuer: gw.publicUrl });
    const assertion = await callAs(new StreamableHTTPClientTransport(new URL(gw.mcpUrl), { authProvider: provider }));
    assert.equal(provider.tokens()?.refresh_token, undefined);
    assert.equal(provider.tokens()?.scope, 'mcp:tools');
    assert.equal(assertion.sub, 'nightly-job');
    assert.equal(assertion['idtyp'], 'app');
    assert.deepEqual(assertion['roles'], ['reporter']);
    assert.equal(assertion['email'], undefined);
  });

  it('the SDK PrivateKeyJwtProvider (private_key_jwt, RFC 7523 §2.2) gets a token and calls tools', async () => {
    const provider = new PrivateKeyJwtProvider({ clientId: 'keyed-job', privateKey: jobPrivateKeyPem, algorithm: 'ES256', expectedIssuer: gw.publicUrl });
    const assertion = await callAs(new StreamableHTTPClientTransport(new URL(gw.mcpUrl), { authProvider: provider }));
    assert.equal(assertion.sub, 'keyed-job');
    assert.equal(assertion['idtyp'], 'app');
    assert.deepEqual(assertion['roles'], ['indexer']);
  });

  it('a client assertion is single use, and must be signed by the client’s key for our issuer', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const jobKey = await importPKCS8(jobPrivateKeyPem, 'ES256');
    const now = Math.floor(Date.now() / 1000);
    const sign = (key: typeof privateKey, aud: string, jti: string) =>
      new SignJWT({ jti }).setProtectedHeader({ alg: 'ES256' }).setIssuer('keyed-job').setSubject('keyed-job').setAudience(aud).setIssuedAt(now).setExpirationTime(now + 60).sign(key);
    const fields = (assertion: string) => ({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
    });
    const once = await sign(jobKey, `${gw.publicUrl}/token`, 'jti-1');
    assert.equal((await token(fields(once))).status, 200);
    const replay = await token(fields(once));
    assert.deepEqual([replay.status, replay.body['error']], [401, 'invalid_client']);
    assert.match(String(replay.body['error_description']), /already used/);
    const stranger = await token(fields(await sign(privateKey, gw.publicUrl, 'jti-2')));
    assert.deepEqual([stranger.status, stranger.body['error']], [401, 'invalid_client']);
    const elsewhere = await token(fields(await sign(jobKey, 'https://other-as.example', 'jti-3')));
    assert.deepEqual([elsewhere.status, elsewhere.body['error']], [401, 'invalid_client']);
    assert.match(String(elsewhere.body['error_description']), /aud/);
  });

  it('a jwksUri client’s keys are fetched with the SSRF guard: on loopback (dev mode) they verify; a JWK Set over 128 KiB is refused', async () => {
    const jobKey = await importPKCS8(jobPrivateKeyPem, 'ES256');
    const assertionFor = (clientId: string) => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ jti: `${clientId}-1` })
        .setProtectedHeader({ alg: 'ES256', kid: 'job-1' })
        .setIssuer(clientId)
        .setSubject(clientId)
        .setAudience(`${gw.publicUrl}/token`)
        .setIssuedAt(now)
        .setExpirationTime(now + 60)
        .sign(jobKey);
    };
    const fields = async (clientId: string) => ({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await assertionFor(clientId),
    });
    const remote = await token(await fields('remote-keyed-job'));
    assert.equal(remote.status, 200, JSON.stringify(remote.body));
    const oversized = await token(await fields('oversized-keys-job'));
    assert.deepEqual([oversized.status, oversized.body], [503, { error: 'temporarily_unavailable', error_description: "the client's keys could not be fetched" }]);
  });

  it('Entra’s signing keys are fetched with the SSRF guard: a JWK Set over 128 KiB is refused', async () => {
    const grant = createEntraWorkloadGrant(gw.ctx, { ...gw.ctx.config.workloads.entra!, jwksUri: `${authority}/oversized/keys` });
    const assertion = await signEntra({ azp: 'app-allowed', roles: [] });
    await assert.rejects(grant.redeem(undefined, assertion, { address: '127.0.0.1' }), {
      code: 'temporarily_unavailable',
      description: "Entra's signing keys could not be fetched",
    });
  });

  // Checked at start, before anything is fetched: https, or http on a loopback host in dev mode only.
  const refusedKeyUrls: [string, () => unknown][] = [
    [
      'clients[0].jwksUri',
      () =>
        createConfiguredClients([{ ...gw.ctx.config.clients[2]!, jwksUri: 'http://keys.example.com/job/keys' }], {
          clock: gw.ctx.clock,
          customSchemes: [],
          dev: true,
          logger: gw.ctx.logger,
        }),
    ],
    ['workloads.entra.jwksUri', () => createEntraWorkloadGrant(gw.ctx, { ...gw.ctx.config.workloads.entra!, jwksUri: 'http://keys.example.com/keys' })],
    ['workloads.entra.authorityHost', () => createEntraWorkloadGrant(gw.ctx, { ...gw.ctx.config.workloads.entra!, authorityHost: 'http://login.example.com' })],
  ];
  for (const [key, build] of refusedKeyUrls) {
    it(`an http ${key} on a host that is not loopback stops the start with a line naming ${key}`, () => {
      assert.throws(build, { message: `${key}: must be https (http only on loopback, in dev mode)` });
    });
  }

  it('client_credentials is refused to a client not registered for it, and to a wrong secret', async () => {
    const wrong = await token({ grant_type: 'client_credentials', client_id: 'nightly-job', client_secret: 'nope' });
    assert.deepEqual([wrong.status, wrong.body['error']], [401, 'invalid_client']);
    const register = await fetch(`${gw.publicUrl}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:5000/cb'], token_endpoint_auth_method: 'none' }),
    });
    const { client_id } = (await register.json()) as { client_id: string };
    const publicClient = await token({ grant_type: 'client_credentials', client_id });
    assert.deepEqual([publicClient.status, publicClient.body['error']], [400, 'unauthorized_client']);
  });

  it('an Entra app-only token of an allowed tenant and app id is accepted; the workload reaches the backend as the app', async () => {
    const answer = await token({ grant_type: JWT_BEARER, assertion: await signEntra({ azp: 'app-allowed', roles: [] }) });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body['refresh_token'], undefined);
    const record = await gw.ctx.grants.validateAccessToken(String(answer.body['access_token']));
    assert.equal(record?.user.kind, 'workload');
    assert.equal(record?.user.subject, 'app-allowed');
    assert.equal(record?.user.tenantId, TENANT);
    const transport = new StreamableHTTPClientTransport(new URL(gw.mcpUrl), {
      requestInit: { headers: { authorization: `Bearer ${answer.body['access_token']}` } },
    });
    const assertion = await callAs(transport);
    assert.equal(assertion.sub, 'app-allowed');
    assert.equal(assertion['idtyp'], 'app');
    assert.equal(assertion['tid'], TENANT);
  });

  it('an Entra app not on the list is accepted only while it holds a required app role', async () => {
    const withRole = await token({ grant_type: JWT_BEARER, assertion: await signEntra({ azp: 'app-other', roles: ['Mcp.Invoke'] }) });
    assert.equal(withRole.status, 200, JSON.stringify(withRole.body));
    const record = await gw.ctx.grants.validateAccessToken(String(withRole.body['access_token']));
    assert.deepEqual(record?.user.roles, ['Mcp.Invoke']);
    const without = await token({ grant_type: JWT_BEARER, assertion: await signEntra({ azp: 'app-other', roles: ['Something.Else'] }) });
    assert.deepEqual([without.status, without.body['error']], [400, 'invalid_grant']);
    assert.match(String(without.body['error_description']), /app app-other is not allowed/);
  });

  it('an Entra app-only token from another tenant, for another audience, or on behalf of a user is refused', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ azp: 'app-allowed', tid: OTHER_TENANT }, /tenant 11111111-2222-4333-8444-555555555555 is not allowed/],
      [{ azp: 'app-allowed', aud: 'api://another-app' }, /not valid: aud/],
      [{ azp: 'app-allowed', scp: 'user_impersonation', idtyp: 'user' }, /user token/],
    ];
    for (const [claims, description] of cases) {
      const answer = await token({ grant_type: JWT_BEARER, assertion: await signEntra(claims) });
      assert.deepEqual([answer.status, answer.body['error']], [400, 'invalid_grant'], JSON.stringify(claims));
      assert.match(String(answer.body['error_description']), description);
    }
  });

  it('AS metadata advertises client_credentials, jwt-bearer and private_key_jwt with its algorithms, and no ID-JAG profile', async () => {
    const metadata = (await (await fetch(`${gw.publicUrl}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.deepEqual(metadata['grant_types_supported'], ['authorization_code', 'refresh_token', 'client_credentials', JWT_BEARER]);
    assert.deepEqual(metadata['token_endpoint_auth_methods_supported'], ['none', 'client_secret_post', 'client_secret_basic', 'private_key_jwt']);
    assert.ok((metadata['token_endpoint_auth_signing_alg_values_supported'] as string[]).includes('ES256'));
    assert.ok(!(metadata['token_endpoint_auth_signing_alg_values_supported'] as string[]).some((alg) => alg.startsWith('HS') || alg === 'none'));
    assert.equal(metadata['authorization_grant_profiles_supported'], undefined);
  });

  it('AS metadata of a gateway with none of these enabled lists only the code and refresh grants', async () => {
    const plain = await startHarness();
    try {
      const metadata = (await (await fetch(`${plain.publicUrl}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
      assert.deepEqual(metadata['grant_types_supported'], ['authorization_code', 'refresh_token']);
      assert.deepEqual(metadata['token_endpoint_auth_methods_supported'], ['none', 'client_secret_post', 'client_secret_basic']);
      assert.equal(metadata['token_endpoint_auth_signing_alg_values_supported'], undefined);
      const jwtBearer = await fetch(`${plain.publicUrl}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: JWT_BEARER, assertion: 'a.b.c' }),
      });
      assert.equal(jwtBearer.status, 400);
      assert.equal(((await jwtBearer.json()) as Record<string, unknown>)['error'], 'unsupported_grant_type');
    } finally {
      await plain.close();
    }
  });
});
