import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Client, CrossAppAccessProvider, discoverAndRequestJwtAuthGrant, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { createRemoteJWKSet, type JWTPayload, jwtVerify } from 'jose';
import pino from 'pino';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { type EnterpriseIdp, startEnterpriseIdp } from '../support/enterprise-idp.ts';
import { type Harness, mutableClock, startHarness } from '../support/gateway-harness.ts';
import { type McpBackend, startMcpBackend } from '../support/mcp-backend.ts';
import { freePort } from '../support/ports.ts';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const CLIENT = { clientId: 'agent', secret: 'agent-secret' };
const IDP_CLIENT = { idpClientId: 'agent-at-idp', idpClientSecret: 'idp-secret' };
type TokenAnswer = { status: number; body: Record<string, unknown> };
/** https, but a loopback address (standing for 169.254.169.254 and the like). */
const PRIVATE_JWKS_URI = (issuer: string) => `${issuer.replace('http:', 'https:')}/jwks`;
/** The issuer's own working key set, but at another origin over http (in dev mode only the issuer's own loopback origin may be http). */
const OTHER_ORIGIN_JWKS_URI = (issuer: string) => `${issuer.replace('127.0.0.1', 'localhost')}/jwks`;

/** Enterprise-Managed Authorization: ID-JAGs from a trusted enterprise IdP redeemed at /token. */
describe('ID-JAG grant (draft-ietf-oauth-identity-assertion-authz-grant, MCP enterprise-managed-authorization)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-idjag-'));
  const auditFile = join(dir, 'audit.jsonl');
  const clock = mutableClock();
  let idp: EnterpriseIdp;
  let untrusted: EnterpriseIdp;
  /** Trusted issuers whose metadata points jwks_uri where the gateway must not fetch. */
  let privateJwks: EnterpriseIdp;
  let otherOriginJwks: EnterpriseIdp;
  const logs: Record<string, unknown>[] = [];
  let backend: McpBackend;
  let gw: Harness;

  function gatewayOptions(port: number) {
    return {
      port,
      backends: [{ name: 'test', path: '/mcp', url: backend.mcpUrl, scopes: ['mcp:tools', 'mcp:admin'] }],
      config: {
        clients: [{ clientId: CLIENT.clientId, name: 'Enterprise agent', secret: CLIENT.secret, grantTypes: [JWT_BEARER] }],
        enterpriseAuthorization: {
          issuers: [idp, privateJwks, otherOriginJwks].map((trusted) => ({ issuer: trusted.issuer, algorithms: ['ES256'] })),
        },
      },
    };
  }

  before(async () => {
    idp = await startEnterpriseIdp({ ...IDP_CLIENT, gatewayClientId: CLIENT.clientId, allowedScopes: ['mcp:tools'] });
    untrusted = await startEnterpriseIdp({ ...IDP_CLIENT, gatewayClientId: CLIENT.clientId, allowedScopes: ['mcp:tools'] });
    privateJwks = await startEnterpriseIdp({ ...IDP_CLIENT, gatewayClientId: CLIENT.clientId, allowedScopes: ['mcp:tools'], jwksUri: PRIVATE_JWKS_URI });
    otherOriginJwks = await startEnterpriseIdp({ ...IDP_CLIENT, gatewayClientId: CLIENT.clientId, allowedScopes: ['mcp:tools'], jwksUri: OTHER_ORIGIN_JWKS_URI });
    backend = await startMcpBackend();
    const options = gatewayOptions(await freePort());
    const lines = new Writable({
      write(chunk, _encoding, done) {
        logs.push(JSON.parse(String(chunk)) as Record<string, unknown>);
        done();
      },
    });
    gw = await startHarness({
      ...options,
      clock,
      logger: pino({ level: 'warn' }, lines),
      config: { ...options.config, audit: { sink: 'file', file: { path: auditFile } } },
    });
  });
  after(async () => {
    await gw.close();
    await backend.close();
    await idp.close();
    await untrusted.close();
    await privateJwks.close();
    await otherOriginJwks.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function redeem(base: string, assertion: string, fields: Record<string, string> = {}, secret = CLIENT.secret): Promise<TokenAnswer> {
    const response = await fetch(`${base}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${CLIENT.clientId}:${secret}`).toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: JWT_BEARER, assertion, ...fields }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  /** An ID-JAG for the gateway and its /mcp resource, with `claims` changed. */
  function idJag(claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}) {
    return idp.mintIdJag({ aud: gw.publicUrl, resource: gw.mcpUrl, iat: clock.nowSeconds(), exp: clock.nowSeconds() + 300, ...claims }, header);
  }

  async function assertRefused(answer: Promise<TokenAnswer>, error: string, description: RegExp) {
    const { status, body } = await answer;
    assert.equal(status, error === 'invalid_client' ? 401 : 400, JSON.stringify(body));
    assert.equal(body['error'], error);
    assert.match(String(body['error_description']), description);
  }

  it('the v2 SDK client with CrossAppAccessProvider gets an ID-JAG by token exchange, a gateway token, and calls tools as the user with their roles', async () => {
    const idToken = await idp.idToken({ sub: 'u-42', email: 'dana@corp.example', name: 'Dana Dev', roles: ['engineer'] });
    const provider = new CrossAppAccessProvider({
      clientId: CLIENT.clientId,
      clientSecret: CLIENT.secret,
      expectedIssuer: gw.publicUrl,
      assertion: async (context) =>
        (
          await discoverAndRequestJwtAuthGrant({
            idpUrl: idp.issuer,
            audience: context.authorizationServerUrl,
            resource: context.resourceUrl,
            idToken,
            ...{ clientId: IDP_CLIENT.idpClientId, clientSecret: IDP_CLIENT.idpClientSecret },
            scope: context.scope,
            fetchFn: context.fetchFn,
          })
        ).jwtAuthGrant,
    });
    const before = backend.requests.length;
    const client = new Client({ name: 'xaa-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(gw.mcpUrl), { authProvider: provider }));
    const result = await client.callTool({ name: 'echo', arguments: { text: 'hi' } });
    assert.deepEqual(result.content, [{ type: 'text', text: 'hi' }]);
    await client.close();
    assert.equal(idp.issued.length, 1);
    assert.equal(idp.issued[0]!.aud, gw.publicUrl);
    assert.equal(idp.issued[0]!.resource, gw.mcpUrl);
    assert.equal(provider.tokens()?.refresh_token, undefined);
    assert.equal(provider.tokens()?.scope, 'mcp:tools');
    // No per-tool policy exists yet: the roles the IdP asserted reach the backend in the identity assertion.
    const assertion = await identityAssertion(backend.requests.slice(before).find((r) => r.headers['x-mcp-identity'])!.headers['x-mcp-identity']);
    assert.equal(assertion.sub, 'u-42');
    assert.deepEqual(assertion['roles'], ['engineer']);
    assert.equal(assertion['email'], 'dana@corp.example');
    assert.equal(assertion['client_id'], CLIENT.clientId);
    assert.equal(assertion['idtyp'], undefined);
    // The grant is in the audit trail like any other, with its grant type.
    await gw.ctx.audit.flush();
    const issued = readFileSync(auditFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((r) => r['event.name'] === 'gateway.grant.issued' && r['oauth.client.id'] === CLIENT.clientId);
    assert.equal(issued.length, 1);
    assert.equal(issued[0]!['oauth.grant_type'], JWT_BEARER);
    assert.equal(issued[0]!['user.id'], `${idp.issuer}|u-42`);
    assert.equal(issued[0]!['gateway.assertion.issuer'], idp.issuer);
    assert.equal(issued[0]!['oauth.resource'], gw.mcpUrl);
  });

  async function identityAssertion(header: unknown): Promise<JWTPayload> {
    const jwks = createRemoteJWKSet(new URL(`${gw.url}/.well-known/jwks.json`));
    return (await jwtVerify(String(header), jwks, { issuer: gw.publicUrl, audience: gw.mcpUrl })).payload;
  }

  it('answers an access token bound to the resource, with no refresh token (MCP §5.1)', async () => {
    const { status, body } = await redeem(gw.publicUrl, await idJag());
    assert.equal(status, 200);
    assert.deepEqual(Object.keys(body).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
    const record = await gw.ctx.grants.validateAccessToken(String(body['access_token']));
    assert.equal(record?.resource, gw.mcpUrl);
    assert.equal(record?.clientId, CLIENT.clientId);
  });

  it('refuses an ID-JAG whose typ is not oauth-id-jag+jwt (RFC 8725 §3.11)', async () => {
    await assertRefused(redeem(gw.publicUrl, await idJag({}, { typ: 'JWT' })), 'invalid_grant', /typ must be oauth-id-jag\+jwt/);
  });

  it('refuses an ID-JAG from an issuer that is not trusted', async () => {
    const foreign = await untrusted.mintIdJag({ aud: gw.publicUrl, resource: gw.mcpUrl });
    await assertRefused(redeem(gw.publicUrl, foreign), 'invalid_grant', /issuer is not trusted/);
  });

  const jwksUriRefusals: [string, () => EnterpriseIdp, (issuer: string) => string, string][] = [
    ['at a private address, though https', () => privateJwks, PRIVATE_JWKS_URI, 'is a private, loopback or link-local address'],
    ['over http at another origin than the issuer’s', () => otherOriginJwks, OTHER_ORIGIN_JWKS_URI, "must be https when not on the issuer's origin"],
  ];
  for (const [name, issuerOf, jwksUriOf, reason] of jwksUriRefusals) {
    it(`refuses an ID-JAG whose issuer's metadata puts jwks_uri ${name}, fetching nothing there, and logs why`, async () => {
      const trusted = issuerOf();
      const assertion = await trusted.mintIdJag({ aud: gw.publicUrl, resource: gw.mcpUrl });
      const { status, body } = await redeem(gw.publicUrl, assertion);
      assert.equal(status, 503, JSON.stringify(body));
      assert.deepEqual(body, { error: 'temporarily_unavailable', error_description: `the ID-JAG issuer's jwks_uri ${reason}` });
      const line = logs.find((l) => l['msg'] === 'ID-JAG issuer jwks_uri refused' && l['issuer'] === trusted.issuer);
      assert.equal(line?.['reason'], reason);
      assert.equal(line?.['jwksUri'], jwksUriOf(trusted.issuer));
      assert.equal(trusted.jwksFetches, 0);
    });
  }

  it('refuses an ID-JAG signed by another key than the trusted issuer’s', async () => {
    const forged = await untrusted.mintIdJag({ iss: idp.issuer, aud: gw.publicUrl, resource: gw.mcpUrl });
    await assertRefused(redeem(gw.publicUrl, forged), 'invalid_grant', /not valid: (signature does not verify|no key)/);
  });

  it('refuses an ID-JAG whose aud is not this gateway’s issuer (MCP §7.6.2)', async () => {
    await assertRefused(redeem(gw.publicUrl, await idJag({ aud: 'https://other-as.example' })), 'invalid_grant', /not valid: aud/);
  });

  it('refuses an ID-JAG for a resource this gateway does not serve (MCP §7.6.2)', async () => {
    await assertRefused(redeem(gw.publicUrl, await idJag({ resource: 'https://other.example/mcp' })), 'invalid_grant', /resource is not served by this gateway/);
    await assertRefused(redeem(gw.publicUrl, await idJag({ resource: undefined })), 'invalid_grant', /names no resource/);
  });

  it('refuses an ID-JAG issued to another client than the authenticated one (draft §4.4.1)', async () => {
    await assertRefused(redeem(gw.publicUrl, await idJag({ client_id: 'someone-else' })), 'invalid_grant', /issued to another client/);
  });

  it('refuses an ID-JAG redeemed without the client’s credentials', async () => {
    await assertRefused(redeem(gw.publicUrl, await idJag(), {}, 'wrong-secret'), 'invalid_client', /client authentication failed/);
  });

  it('refuses an expired ID-JAG, and one that lives longer than five minutes (MCP §7.4.2)', async () => {
    const soon = await idJag();
    clock.advance(301 + 30);
    try {
      await assertRefused(redeem(gw.publicUrl, soon), 'invalid_grant', /not valid: exp|expired/);
    } finally {
      clock.advance(-(301 + 30));
    }
    await assertRefused(redeem(gw.publicUrl, await idJag({ exp: clock.nowSeconds() + 3600 })), 'invalid_grant', /lives longer than 300 seconds/);
  });

  it('grants requested ∩ asserted ∩ the backend’s scopes, and invalid_scope when nothing is left (MCP §7.2.1)', async () => {
    const asserted = await idJag({ scope: 'mcp:tools mcp:admin files:write' });
    const narrowed = await redeem(gw.publicUrl, asserted, { scope: 'mcp:admin files:write other' });
    assert.equal(narrowed.status, 200);
    assert.equal(narrowed.body['scope'], 'mcp:admin');
    const all = await redeem(gw.publicUrl, await idJag({ scope: 'mcp:tools files:write' }));
    assert.equal(all.body['scope'], 'mcp:tools');
    await assertRefused(redeem(gw.publicUrl, await idJag({ scope: 'mcp:tools' }), { scope: 'mcp:admin' }), 'invalid_scope', /none of the requested scopes/);
  });

  it('refuses an ID-JAG with cnf or authorization_details the gateway cannot honour', async () => {
    await assertRefused(redeem(gw.publicUrl, await idJag({ cnf: { jkt: 'abc' } })), 'invalid_grant', /carries cnf/);
    await assertRefused(redeem(gw.publicUrl, await idJag({ authorization_details: [{ type: 'x' }] })), 'invalid_grant', /carries authorization_details/);
  });

  it('an ID-JAG is single use across two replicas sharing one Store (MCP §7.4.2: jti)', async () => {
    const file = join(dir, 'shared.db');
    const stores = [SqliteStore.open({ path: file, clock }), SqliteStore.open({ path: file, clock })];
    const port = await freePort();
    // Both replicas answer for the same public URL (behind one load balancer), each on its own port.
    const replicas: Harness[] = [];
    try {
      for (const store of stores) {
        const options = gatewayOptions(await freePort());
        replicas.push(await startHarness({ ...options, store, clock, config: { ...options.config, publicUrl: `http://localhost:${port}` } }));
      }
      const once = await idp.mintIdJag({ aud: `http://localhost:${port}`, resource: `http://localhost:${port}/mcp` });
      const first = await redeem(replicas[0]!.url, once);
      assert.equal(first.status, 200, JSON.stringify(first.body));
      await assertRefused(redeem(replicas[1]!.url, once), 'invalid_grant', /already used/);
    } finally {
      for (const replica of replicas) await replica.close();
      for (const store of stores) await store.close();
    }
  });

  it('AS metadata advertises the jwt-bearer grant and the ID-JAG profile when issuers are configured, private_key_jwt only when a client uses it', async () => {
    const metadata = (await (await fetch(`${gw.publicUrl}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.deepEqual(metadata['grant_types_supported'], ['authorization_code', 'refresh_token', JWT_BEARER]);
    assert.deepEqual(metadata['authorization_grant_profiles_supported'], ['urn:ietf:params:oauth:grant-profile:id-jag']);
    assert.deepEqual(metadata['token_endpoint_auth_methods_supported'], ['none', 'client_secret_post', 'client_secret_basic']);
    assert.equal(metadata['token_endpoint_auth_signing_alg_values_supported'], undefined);
  });
});
