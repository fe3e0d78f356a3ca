import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from 'jose';
import * as client from 'openid-client';
import type { EntraIdpConfig } from '../../src/config/schema.ts';
import { createEntraIdp, federatedAudience } from '../../src/idp/entra.ts';
import type { UpstreamLogger } from '../../src/idp/oidc.ts';
import { type UpstreamIdp, UpstreamRefusedError, UpstreamUnavailableError } from '../../src/ports/idp.ts';
import {
  ENTRA_TEST_TENANT,
  type EntraShapedIdp,
  entraError,
  entraPairwiseSubject,
  type InjectedFailure,
  SNIPPETS_API_SCOPE,
  startEntraShapedIdp,
} from '../support/entra-shaped-idp.ts';
import { createHeadlessBrowser, signInAtDevIdp } from '../support/headless-browser.ts';

const REDIRECT_URI = 'http://127.0.0.1:9/callback';
const CLIENT_ID = '3fa85f64-5717-4562-b3fc-2c963f66afa6';
const CLIENT_SECRET = 'entra-test-secret-0123456789';
const OTHER_TENANT = 'a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d';
const USER = { login: 'adele@contoso.test', password: 'correct horse' };
const toCallback = (location: URL) => location.href.startsWith(REDIRECT_URI);

function entraConfig(idp: EntraShapedIdp, overrides: Partial<EntraIdpConfig> = {}): EntraIdpConfig {
  return {
    tenantId: idp.tenantId,
    allowedTenants: [],
    clientId: CLIENT_ID,
    authorityHost: idp.authorityHost,
    clientSecret: CLIENT_SECRET,
    scopes: ['openid', 'profile', 'email', 'offline_access'],
    ...overrides,
  };
}

async function signIn(idp: UpstreamIdp, prompt?: 'login' | 'select_account') {
  const browser = createHeadlessBrowser();
  const request = { state: client.randomState(), nonce: client.randomNonce(), codeVerifier: client.randomPKCECodeVerifier() };
  const url = await idp.authorizationUrl({ ...request, prompt });
  const page = await browser.get(url);
  const done = await signInAtDevIdp(browser, page, USER.login, USER.password, { stopAt: toCallback });
  assert.ok(done.stoppedAt, `sign-in did not reach the callback: ${done.status} ${done.body.slice(0, 200)}`);
  return { request, callbackUrl: done.stoppedAt };
}

describe('entra adapter against an Entra-shaped IdP', () => {
  let lookalike: EntraShapedIdp;

  before(async () => {
    lookalike = await startEntraShapedIdp({
      client: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [REDIRECT_URI] },
    });
  });
  after(() => lookalike.close());

  test('on the wire: no resource, offline_access requested, the prompt asked for; the configured scopes on refresh', async () => {
    const idp = await createEntraIdp(entraConfig(lookalike, { scopes: ['openid', 'email'] }), {
      redirectUri: REDIRECT_URI,
      allowInsecureHttp: true,
    });
    assert.equal(idp.kind, 'entra');
    lookalike.authorizeRequests.length = 0;
    lookalike.tokenRequests.length = 0;

    const { request, callbackUrl } = await signIn(idp, 'select_account');
    const { identity, tokens } = await idp.completeSignIn({ callbackUrl, ...request });
    assert.equal(identity.issuer, `${lookalike.authorityHost}/${ENTRA_TEST_TENANT}/v2.0`);
    assert.equal(identity.tenantId, ENTRA_TEST_TENANT);
    assert.equal(identity.objectId, '8f3c2a1e-5b7d-4e9f-a1c3-2d4e6f8a0b1c');
    assert.equal(identity.name, 'Adele Vance');
    assert.equal(identity.preferredUsername, USER.login);
    assert.deepEqual(identity.roles, ['Snippets.Write']);
    assert.deepEqual(identity.groups, ['4d2f6a8c-1e3b-4c5d-9f7a-0b2c4d6e8f1a']);
    assert.ok(tokens.refreshToken);

    const { tokens: refreshed } = await idp.refresh(tokens);
    assert.ok(refreshed.accessToken);

    assert.equal(lookalike.authorizeRequests.length, 1);
    const authorize = lookalike.authorizeRequests[0]!;
    assert.equal(authorize.has('resource'), false);
    assert.deepEqual(authorize.get('scope')?.split(' ').sort(), ['email', 'offline_access', 'openid', 'profile']);
    assert.equal(authorize.get('prompt'), 'select_account');
    assert.equal(authorize.get('code_challenge_method'), 'S256');

    assert.equal(lookalike.tokenRequests.length, 2);
    const [code, refresh] = lookalike.tokenRequests as [URLSearchParams, URLSearchParams];
    for (const body of [code, refresh]) {
      assert.equal(body.has('resource'), false);
      assert.equal(body.get('client_id'), CLIENT_ID);
      assert.equal(body.get('client_secret'), CLIENT_SECRET);
    }
    assert.equal(code.get('grant_type'), 'authorization_code');
    assert.ok(code.get('code_verifier'));
    assert.equal(refresh.get('grant_type'), 'refresh_token');
    // The configured scopes again, not Entra's `scope` of the last response (which has no offline_access).
    assert.deepEqual(refresh.get('scope')?.split(' ').sort(), ['email', 'offline_access', 'openid', 'profile']);
  });

  test('prompt login and select_account pass through; login_hint never with select_account', async () => {
    const idp = await createEntraIdp(entraConfig(lookalike), { redirectUri: REDIRECT_URI, allowInsecureHttp: true });
    const request = { state: 's', nonce: 'n', codeVerifier: client.randomPKCECodeVerifier() };
    assert.equal((await idp.authorizationUrl({ ...request, prompt: 'login' })).searchParams.get('prompt'), 'login');
    const selectAccount = await idp.authorizationUrl({ ...request, prompt: 'select_account', loginHint: USER.login });
    assert.equal(selectAccount.searchParams.get('prompt'), 'select_account');
    // Entra: login_hint must not be combined with prompt=select_account.
    assert.equal(selectAccount.searchParams.has('login_hint'), false);
    const login = await idp.authorizationUrl({ ...request, prompt: 'login', loginHint: USER.login });
    assert.equal(login.searchParams.get('login_hint'), USER.login);
    assert.equal((await idp.authorizationUrl(request)).searchParams.has('prompt'), false);
  });

  test('multi-tenant: the per-tenant issuer is accepted for an allowed tid', async () => {
    const idp = await createEntraIdp(
      entraConfig(lookalike, {
        tenantId: 'organizations',
        allowedTenants: [OTHER_TENANT, ENTRA_TEST_TENANT],
        // The schema's default, with a Graph scope the look-alike ignores (as an unknown scope).
        scopes: ['openid', 'profile', 'email', 'offline_access', 'User.Read'],
      }),
      { redirectUri: REDIRECT_URI, allowInsecureHttp: true },
    );
    const { request, callbackUrl } = await signIn(idp);
    const { identity } = await idp.completeSignIn({ callbackUrl, ...request });
    assert.equal(identity.issuer, `${lookalike.authorityHost}/${ENTRA_TEST_TENANT}/v2.0`);
    assert.equal(identity.tenantId, ENTRA_TEST_TENANT);
  });

  test('multi-tenant: a tid outside allowedTenants is refused with access_denied', async () => {
    const idp = await createEntraIdp(
      entraConfig(lookalike, { tenantId: 'organizations', allowedTenants: [OTHER_TENANT] }),
      { redirectUri: REDIRECT_URI, allowInsecureHttp: true },
    );
    const { request, callbackUrl } = await signIn(idp);
    await assert.rejects(idp.completeSignIn({ callbackUrl, ...request }), (error: unknown) => {
      assert.ok(error instanceof UpstreamRefusedError);
      assert.equal(error.upstreamError, 'access_denied');
      assert.match(error.message, new RegExp(ENTRA_TEST_TENANT));
      return true;
    });
  });

  test('a wrong nonce is refused', async () => {
    const idp = await createEntraIdp(entraConfig(lookalike), { redirectUri: REDIRECT_URI, allowInsecureHttp: true });
    const { request, callbackUrl } = await signIn(idp);
    await assert.rejects(
      idp.completeSignIn({ callbackUrl, ...request, nonce: client.randomNonce() }),
      (error: unknown) => error instanceof UpstreamRefusedError && /nonce|claim/i.test(String(error.cause)),
    );
  });

  test("the gateway's own credentials refused (invalid_client) is unavailability, not the user's refusal", async () => {
    const idp = await createEntraIdp(entraConfig(lookalike, { clientSecret: 'expired-secret' }), {
      redirectUri: REDIRECT_URI,
      allowInsecureHttp: true,
    });
    const { request, callbackUrl } = await signIn(idp);
    await assert.rejects(idp.completeSignIn({ callbackUrl, ...request }), UpstreamUnavailableError);
  });

  test('an upstream error in the callback is refused with its code', async () => {
    const idp = await createEntraIdp(entraConfig(lookalike), { redirectUri: REDIRECT_URI, allowInsecureHttp: true });
    const callbackUrl = new URL(`${REDIRECT_URI}?error=access_denied&error_description=no&state=s1`);
    await assert.rejects(
      idp.completeSignIn({ callbackUrl, state: 's1', nonce: 'n', codeVerifier: client.randomPKCECodeVerifier() }),
      (error: unknown) => error instanceof UpstreamRefusedError && error.upstreamError === 'access_denied',
    );
  });
});

/** A logger that keeps what was logged, by level. */
function capturingLogger() {
  const lines: { level: 'error' | 'warn' | 'info'; fields: Record<string, unknown>; message: string }[] = [];
  const at = (level: 'error' | 'warn' | 'info') => (fields: Record<string, unknown>, message: string) => {
    lines.push({ level, fields, message });
  };
  const logger = { error: at('error'), warn: at('warn'), info: at('info') } as unknown as UpstreamLogger;
  return { logger, lines };
}

describe('entra adapter: refresh as Entra answers it', () => {
  let lookalike: EntraShapedIdp;
  before(async () => {
    lookalike = await startEntraShapedIdp({
      client: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [REDIRECT_URI] },
    });
  });
  after(() => lookalike.close());

  test("refresh with .default sends the configured scopes, not Entra's expanded `scope` (AADSTS70011)", async () => {
    const graphDefault = 'https://graph.microsoft.com/.default';
    const idp = await createEntraIdp(entraConfig(lookalike, { scopes: ['openid', 'profile', 'offline_access', graphDefault] }), {
      redirectUri: REDIRECT_URI,
      allowInsecureHttp: true,
    });
    const { request, callbackUrl } = await signIn(idp);
    const { tokens } = await idp.completeSignIn({ callbackUrl, ...request });
    // Entra's `scope`: the permissions .default stands for, plus .default; replaying it is AADSTS70011.
    assert.deepEqual(tokens.scope?.split(' '), ['openid', 'profile', 'https://graph.microsoft.com/User.Read', graphDefault]);
    const first = await idp.refresh(tokens);
    const second = await idp.refresh(first.tokens);
    assert.ok(second.tokens.accessToken);
    for (const body of lookalike.tokenRequests.slice(-2)) {
      assert.deepEqual(body.get('scope')?.split(' ').sort(), [graphDefault, 'offline_access', 'openid', 'profile']);
    }
  });

  test("refresh with a custom API's scope still brings an id_token, whose tid is checked again", async () => {
    const idp = await createEntraIdp(
      entraConfig(lookalike, { scopes: ['openid', 'profile', 'offline_access', SNIPPETS_API_SCOPE] }),
      { redirectUri: REDIRECT_URI, allowInsecureHttp: true },
    );
    const { request, callbackUrl } = await signIn(idp);
    const { tokens } = await idp.completeSignIn({ callbackUrl, ...request });
    // Entra's `scope` for an API: its scopes only, no openid — a refresh replaying it gets no id_token.
    assert.equal(tokens.scope, SNIPPETS_API_SCOPE);
    const refreshed = await idp.refresh(tokens);
    assert.equal(refreshed.identity?.tenantId, ENTRA_TEST_TENANT);
    assert.ok(lookalike.tokenRequests.at(-1)!.get('scope')!.split(' ').includes('openid'));

    lookalike.setEntraUser(USER.login, { tid: OTHER_TENANT });
    try {
      await assert.rejects(idp.refresh(refreshed.tokens), (error: unknown) => {
        assert.ok(error instanceof UpstreamRefusedError);
        assert.equal(error.upstreamError, 'access_denied');
        assert.match(error.message, new RegExp(`tenant ${OTHER_TENANT} is not the configured tenant`));
        return true;
      });
    } finally {
      lookalike.setEntraUser(USER.login, { tid: ENTRA_TEST_TENANT });
    }
  });

  test("an id_token from a clock a few minutes ahead is accepted; far ahead it is an outage, not the user's refusal", async () => {
    const idp = await createEntraIdp(entraConfig(lookalike), { redirectUri: REDIRECT_URI, allowInsecureHttp: true });
    const { request, callbackUrl } = await signIn(idp);
    const { tokens } = await idp.completeSignIn({ callbackUrl, ...request });
    try {
      lookalike.setClockAhead(120);
      assert.ok((await idp.refresh(tokens)).identity);
      lookalike.setClockAhead(900);
      await assert.rejects(idp.refresh(tokens), (error: unknown) => {
        assert.ok(error instanceof UpstreamUnavailableError, String(error));
        assert.equal(error.configurationFault, false);
        assert.match(error.message, /timestamp claim/);
        return true;
      });
    } finally {
      lookalike.setClockAhead(0);
    }
  });

  // Entra's documented token errors (reference-error-codes.md; MSAL's InteractionRequiredAuthError):
  // the user must act → the grant ends; anything else → 503 with the grant kept, and a
  // configuration fault (our credential or request) logged as an error.
  const rows: { name: string; failure: InjectedFailure; outcome: 'user must act' | 'unavailable' | 'configuration fault'; code?: number }[] = [
    { name: 'invalid_grant: refresh token expired', failure: { status: 400, body: entraError('invalid_grant', 700082) }, outcome: 'user must act', code: 700082 },
    { name: 'invalid_grant: user password changed', failure: { status: 400, body: entraError('invalid_grant', 50173) }, outcome: 'user must act', code: 50173 },
    { name: 'interaction_required: MFA', failure: { status: 400, body: entraError('interaction_required', 50076, { suberror: 'basic_action' }) }, outcome: 'user must act', code: 50076 },
    { name: 'consent_required', failure: { status: 400, body: entraError('consent_required', 65001, { suberror: 'consent_required' }) }, outcome: 'user must act', code: 65001 },
    { name: 'login_required', failure: { status: 400, body: entraError('login_required', 50058) }, outcome: 'user must act', code: 50058 },
    { name: 'unauthorized_client: app gone from the tenant', failure: { status: 400, body: entraError('unauthorized_client', 700016) }, outcome: 'user must act', code: 700016 },
    { name: 'temporarily_unavailable', failure: { status: 400, body: entraError('temporarily_unavailable', 50089) }, outcome: 'unavailable', code: 50089 },
    { name: 'server_error 500', failure: { status: 500, body: entraError('server_error', 90033) }, outcome: 'unavailable', code: 90033 },
    { name: '503 with Retry-After', failure: { status: 503, body: entraError('temporarily_unavailable', 90033), headers: { 'retry-after': '30' } }, outcome: 'unavailable', code: 90033 },
    { name: '429 throttled', failure: { status: 429, body: entraError('invalid_request', 50196), headers: { 'retry-after': '5' } }, outcome: 'unavailable', code: 50196 },
    { name: 'AADSTS50196 request loop, with 400', failure: { status: 400, body: entraError('invalid_grant', 50196) }, outcome: 'unavailable', code: 50196 },
    { name: 'a proxy HTML page (non-JSON)', failure: { status: 502, body: '<html><body>Bad Gateway</body></html>' }, outcome: 'unavailable' },
    { name: 'a 200 that is not JSON', failure: { status: 200, body: '<html>sign in</html>' }, outcome: 'unavailable' },
    { name: 'invalid_client: secret expired', failure: { status: 401, body: entraError('invalid_client', 7000222) }, outcome: 'configuration fault', code: 7000222 },
    { name: 'invalid_request', failure: { status: 400, body: entraError('invalid_request', 900144) }, outcome: 'configuration fault', code: 900144 },
    { name: 'invalid_scope', failure: { status: 400, body: entraError('invalid_scope', 70011) }, outcome: 'configuration fault', code: 70011 },
    { name: 'invalid_resource', failure: { status: 400, body: entraError('invalid_resource', 500011) }, outcome: 'configuration fault', code: 500011 },
    { name: 'unsupported_grant_type', failure: { status: 400, body: entraError('unsupported_grant_type', 70003) }, outcome: 'configuration fault', code: 70003 },
  ];

  test('each documented refresh error ends the grant only when the user must act, and is logged with its ids', async () => {
    const { logger, lines } = capturingLogger();
    const idp = await createEntraIdp(entraConfig(lookalike), { redirectUri: REDIRECT_URI, allowInsecureHttp: true, logger });
    const { request, callbackUrl } = await signIn(idp);
    const { tokens } = await idp.completeSignIn({ callbackUrl, ...request });
    for (const row of rows) {
      lines.length = 0;
      lookalike.failNextTokenRequests(row.failure);
      const error = await idp.refresh(tokens).then(
        () => assert.fail(`${row.name}: the refresh succeeded`),
        (e: unknown) => e,
      );
      if (row.outcome === 'user must act') {
        assert.ok(error instanceof UpstreamRefusedError, `${row.name}: ${String(error)}`);
      } else {
        assert.ok(error instanceof UpstreamUnavailableError, `${row.name}: ${String(error)}`);
        assert.equal(error.configurationFault, row.outcome === 'configuration fault', row.name);
      }
      assert.equal(lines.length, 1, row.name);
      const line = lines[0]!;
      assert.equal(line.level, { 'user must act': 'info', unavailable: 'warn', 'configuration fault': 'error' }[row.outcome], row.name);
      if (row.code !== undefined && typeof row.failure.body !== 'string') {
        assert.deepEqual(
          line.fields['upstream'],
          {
            status: row.failure.status,
            error: row.failure.body['error'],
            errorCode: row.code,
            ...(row.failure.body['suberror'] ? { suberror: row.failure.body['suberror'] } : {}),
            traceId: row.failure.body['trace_id'],
            correlationId: row.failure.body['correlation_id'],
          },
          row.name,
        );
      }
    }
    // None of it touched the real refresh token.
    assert.ok((await idp.refresh(tokens)).tokens.accessToken);
  });
});

describe("the look-alike's tokens are Entra's", () => {
  let lookalike: EntraShapedIdp;
  before(async () => {
    lookalike = await startEntraShapedIdp({
      client: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [REDIRECT_URI] },
      groupClaims: false,
    });
  });
  after(() => lookalike.close());

  test('pairwise sub, ver and nbf; email only with the email scope; groups only when configured', async () => {
    const idp = await createEntraIdp(entraConfig(lookalike, { scopes: ['openid', 'offline_access'] }), {
      redirectUri: REDIRECT_URI,
      allowInsecureHttp: true,
    });
    const { request, callbackUrl } = await signIn(idp);
    const { identity, tokens } = await idp.completeSignIn({ callbackUrl, ...request });
    const claims = decodeJwt(tokens.idToken!);
    const perUser = createHash('sha256').update(`sub:${ENTRA_TEST_TENANT}:${USER.login}`).digest('base64url').slice(0, 43);
    assert.equal(claims.sub, entraPairwiseSubject(perUser, CLIENT_ID));
    assert.equal(claims['ver'], '2.0');
    assert.equal(typeof claims.nbf, 'number');
    assert.ok(claims.nbf! <= claims.iat!);
    // profile (always asked by the adapter, for oid) gives oid and the names; no email scope, no email.
    assert.equal(identity.objectId, '8f3c2a1e-5b7d-4e9f-a1c3-2d4e6f8a0b1c');
    assert.equal(identity.preferredUsername, USER.login);
    assert.equal(identity.email, undefined);
    assert.equal('email_verified' in claims, false);
    assert.deepEqual(identity.roles, ['Snippets.Write']);
    assert.deepEqual(identity.groups, []);
    assert.equal('groups' in claims, false);
  });

  test('a refresh gives a new refresh token and the old one stays valid (as in Entra)', async () => {
    const idp = await createEntraIdp(entraConfig(lookalike), { redirectUri: REDIRECT_URI, allowInsecureHttp: true });
    const { request, callbackUrl } = await signIn(idp);
    const { tokens } = await idp.completeSignIn({ callbackUrl, ...request });
    const first = await idp.refresh(tokens);
    assert.notEqual(first.tokens.refreshToken, tokens.refreshToken);
    const again = await idp.refresh(tokens);
    assert.ok(again.tokens.accessToken);
    assert.ok((await idp.refresh(first.tokens)).tokens.accessToken);
  });

  test('a disabled user is refused on refresh (invalid_grant), whichever refresh token is used', async () => {
    const users = [{ login: 'lee@contoso.test', password: 'pw', name: 'Lee Gu', roles: [], groups: [] }];
    const own = await startEntraShapedIdp({ client: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [REDIRECT_URI] }, users });
    try {
      const idp = await createEntraIdp(entraConfig(own), { redirectUri: REDIRECT_URI, allowInsecureHttp: true });
      const browser = createHeadlessBrowser();
      const request = { state: client.randomState(), nonce: client.randomNonce(), codeVerifier: client.randomPKCECodeVerifier() };
      const page = await browser.get(await idp.authorizationUrl(request));
      const done = await signInAtDevIdp(browser, page, 'lee@contoso.test', 'pw', { stopAt: toCallback });
      const { tokens } = await idp.completeSignIn({ callbackUrl: done.stoppedAt!, ...request });
      const renewed = await idp.refresh(tokens);
      own.disableUser('lee@contoso.test');
      for (const old of [tokens, renewed.tokens]) {
        await assert.rejects(idp.refresh(old), (error: unknown) => error instanceof UpstreamRefusedError && error.upstreamError === 'invalid_grant');
      }
    } finally {
      await own.close();
    }
  });
});

describe('entra adapter configuration', () => {
  const base: EntraIdpConfig = {
    tenantId: ENTRA_TEST_TENANT,
    allowedTenants: [],
    clientId: CLIENT_ID,
    authorityHost: 'https://login.microsoftonline.com',
    clientSecret: CLIENT_SECRET,
    scopes: [],
  };
  const options = { redirectUri: REDIRECT_URI };

  test('.default mixed with other resource scopes is refused at construction', async () => {
    await assert.rejects(
      createEntraIdp({ ...base, scopes: ['openid', 'https://graph.microsoft.com/.default', 'User.Read'] }, options),
      /^Error: upstream\.entra\.scopes: .*\.default cannot be combined/,
    );
    await assert.rejects(
      createEntraIdp({ ...base, scopes: ['api://snippets/.default', 'api://snippets/Snippets.Read'] }, options),
      /upstream\.entra\.scopes/,
    );
  });

  test('scopes of two resources are refused at construction', async () => {
    await assert.rejects(
      createEntraIdp({ ...base, scopes: ['User.Read', 'api://snippets/Snippets.Read'] }, options),
      /upstream\.entra\.scopes: scopes of more than one resource/,
    );
  });

  test('.default alone with OIDC scopes, and one resource with several scopes, are accepted', async () => {
    await createEntraIdp({ ...base, scopes: ['openid', 'api://snippets/.default'] }, options);
    await createEntraIdp({ ...base, scopes: ['User.Read', 'https://graph.microsoft.com/Mail.Read'] }, options);
  });

  test('http authority hosts need allowInsecureHttp and loopback', async () => {
    await assert.rejects(createEntraIdp({ ...base, authorityHost: 'http://127.0.0.1:1' }, options), /must be https/);
  });
});

describe("entra adapter with a user-assigned managed identity's federated credential", () => {
  const MI_ISSUER = `https://login.microsoftonline.com/${ENTRA_TEST_TENANT}/v2.0`;
  /** The user-assigned identity: its client id (configured) and principal (object) id, the token's `sub`. */
  const MI_CLIENT_ID = '6e2a1f0c-9b3d-4c8e-a7f5-1d2c3b4a5e6f';
  const MI_PRINCIPAL_ID = 'c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f';
  let lookalike: EntraShapedIdp;
  let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

  /** A token as Azure's managed identity endpoint issues it for api://AzureADTokenExchange. */
  const managedIdentityToken = (subject = MI_PRINCIPAL_ID, audience = 'api://AzureADTokenExchange') =>
    new SignJWT({ appid: MI_CLIENT_ID, azp: MI_CLIENT_ID, oid: MI_PRINCIPAL_ID, tid: ENTRA_TEST_TENANT, idtyp: 'app', ver: '2.0' })
      .setProtectedHeader({ alg: 'RS256', kid: 'mi-key', typ: 'JWT' })
      .setIssuer(MI_ISSUER)
      .setSubject(subject)
      .setAudience(audience)
      .setIssuedAt()
      .setNotBefore('0s')
      .setExpirationTime('1h')
      .sign(privateKey);

  const managedIdentityConfig = (): EntraIdpConfig => ({
    ...entraConfig(lookalike),
    clientSecret: undefined,
    managedIdentity: { clientId: MI_CLIENT_ID, audience: 'api://AzureADTokenExchange' },
  });

  before(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    privateKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'mi-key', alg: 'RS256', use: 'sig' };
    lookalike = await startEntraShapedIdp({
      client: { clientId: CLIENT_ID, redirectUris: [REDIRECT_URI] },
      federatedCredentials: [{ issuer: MI_ISSUER, subject: MI_PRINCIPAL_ID, audience: 'api://AzureADTokenExchange', jwks: { keys: [jwk] } }],
    });
  });
  after(() => lookalike.close());

  test("the identity's token (its issuer, principal id, token-exchange audience) signs in and refreshes", async () => {
    const assertions: string[] = [];
    const getFederatedAssertion = async () => {
      assertions.push(await managedIdentityToken());
      return assertions.at(-1)!;
    };
    const idp = await createEntraIdp(managedIdentityConfig(), { redirectUri: REDIRECT_URI, allowInsecureHttp: true, getFederatedAssertion });
    lookalike.tokenRequests.length = 0;
    const { request, callbackUrl } = await signIn(idp);
    const { identity, tokens } = await idp.completeSignIn({ callbackUrl, ...request });
    assert.equal(identity.objectId, '8f3c2a1e-5b7d-4e9f-a1c3-2d4e6f8a0b1c');
    await idp.refresh(tokens);

    assert.equal(lookalike.tokenRequests.length, 2);
    lookalike.tokenRequests.forEach((body, i) => {
      assert.equal(body.get('client_assertion_type'), 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      assert.equal(body.get('client_assertion'), assertions[i]);
      assert.equal(body.get('client_id'), CLIENT_ID);
      assert.equal(body.has('client_secret'), false);
      assert.equal(body.has('resource'), false);
    });
  });

  for (const [name, token, code] of [
    ['another subject (a system-assigned identity, or another one)', () => managedIdentityToken('00000000-1111-4222-8333-444444444444'), 700213],
    ["another cloud's audience", () => managedIdentityToken(MI_PRINCIPAL_ID, 'api://AzureADTokenExchangeUSGov'), 700212],
  ] as const) {
    test(`a federated credential Entra does not match (${name}) is our configuration's fault: unavailable, logged as an error`, async () => {
      const { logger, lines } = capturingLogger();
      const idp = await createEntraIdp(managedIdentityConfig(), {
        redirectUri: REDIRECT_URI,
        allowInsecureHttp: true,
        getFederatedAssertion: token,
        logger,
      });
      const { request, callbackUrl } = await signIn(idp);
      await assert.rejects(idp.completeSignIn({ callbackUrl, ...request }), (error: unknown) => {
        assert.ok(error instanceof UpstreamUnavailableError, String(error));
        assert.equal(error.configurationFault, true);
        assert.equal(error.details?.status, 401);
        assert.equal(error.details?.error, 'invalid_client');
        assert.equal(error.details?.errorCode, code);
        return true;
      });
      assert.deepEqual(
        lines.map((l) => l.level),
        ['error'],
      );
    });
  }
});

describe('managed identity audience per cloud', () => {
  test('derived from the authority host; a configured audience wins; an unknown host needs one', () => {
    assert.equal(federatedAudience('https://login.microsoftonline.com', undefined), 'api://AzureADTokenExchange');
    assert.equal(federatedAudience('https://login.microsoftonline.us/', undefined), 'api://AzureADTokenExchangeUSGov');
    assert.equal(federatedAudience('https://login.chinacloudapi.cn', undefined), 'api://AzureADTokenExchangeChina');
    assert.equal(federatedAudience('https://login.microsoftonline.com', 'api://custom'), 'api://custom');
    assert.throws(
      () => federatedAudience('https://login.example.test', undefined),
      /^Error: upstream\.entra\.managedIdentity\.audience: required for authority host https:\/\/login\.example\.test/,
    );
  });

  test('a managed identity on an unknown authority host without an audience is refused at construction', async () => {
    await assert.rejects(
      createEntraIdp(
        {
          tenantId: ENTRA_TEST_TENANT,
          allowedTenants: [],
          clientId: CLIENT_ID,
          authorityHost: 'https://login.example.test',
          managedIdentity: { clientId: '6e2a1f0c-9b3d-4c8e-a7f5-1d2c3b4a5e6f' },
          scopes: [],
        },
        { redirectUri: REDIRECT_URI },
      ),
      /upstream\.entra\.managedIdentity\.audience: required/,
    );
  });
});

describe('entra adapter with a certificate credential', () => {
  let lookalike: EntraShapedIdp;
  let certificate: { key: string; cert: string };

  before(async () => {
    certificate = rsaCertificate();
    lookalike = await startEntraShapedIdp({
      client: { clientId: CLIENT_ID, redirectUris: [REDIRECT_URI], jwks: { keys: [certificateJwk(certificate.cert)] } },
    });
  });
  after(() => lookalike.close());

  test('signs client assertions with the private key, naming the certificate by its SHA-256 thumbprint', async () => {
    const config: EntraIdpConfig = {
      ...entraConfig(lookalike),
      clientSecret: undefined,
      certificate: { privateKey: certificate.key, certificate: certificate.cert },
    };
    const idp = await createEntraIdp(config, { redirectUri: REDIRECT_URI, allowInsecureHttp: true });
    const { request, callbackUrl } = await signIn(idp);
    const { identity } = await idp.completeSignIn({ callbackUrl, ...request });
    assert.equal(identity.objectId, '8f3c2a1e-5b7d-4e9f-a1c3-2d4e6f8a0b1c');

    const body = lookalike.tokenRequests.at(-1)!;
    assert.equal(body.get('client_assertion_type'), 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    const header = decodeProtectedHeader(body.get('client_assertion')!);
    const x509 = new X509Certificate(certificate.cert);
    // As MSAL sends it to Entra: PS256, named by x5t#S256 only, typ JWT.
    assert.equal(header.alg, 'PS256');
    assert.equal(header.typ, 'JWT');
    assert.equal(header['x5t#S256'], Buffer.from(x509.fingerprint256.replace(/:/g, ''), 'hex').toString('base64url'));
    assert.equal(header.x5t, undefined);
    assert.equal(body.has('client_secret'), false);
  });

  const organizations = (allowedTenants: string[]): EntraIdpConfig => ({
    ...entraConfig(lookalike),
    tenantId: 'organizations',
    allowedTenants,
    clientSecret: undefined,
    certificate: { privateKey: certificate.key, certificate: certificate.cert },
  });

  test('multi-tenant (organizations): code and refresh go to /organizations/oauth2/v2.0/token, the assertion addressed to it', async () => {
    const idp = await createEntraIdp(organizations([OTHER_TENANT, ENTRA_TEST_TENANT]), { redirectUri: REDIRECT_URI, allowInsecureHttp: true });
    const { request, callbackUrl } = await signIn(idp);
    const { identity, tokens } = await idp.completeSignIn({ callbackUrl, ...request });
    assert.equal(identity.tenantId, ENTRA_TEST_TENANT);
    assert.equal(identity.issuer, `${lookalike.authorityHost}/${ENTRA_TEST_TENANT}/v2.0`);
    const refreshed = await idp.refresh(tokens);
    assert.equal(refreshed.identity?.tenantId, ENTRA_TEST_TENANT);

    const tokenUrl = `${lookalike.authorityHost}/organizations/oauth2/v2.0/token`;
    assert.deepEqual(lookalike.tokenRequestUrls.slice(-2), [tokenUrl, tokenUrl]);
    const [code, refresh] = lookalike.tokenRequests.slice(-2) as [URLSearchParams, URLSearchParams];
    assert.equal(code.get('grant_type'), 'authorization_code');
    assert.equal(refresh.get('grant_type'), 'refresh_token');
    for (const body of [code, refresh]) {
      const claims = decodeJwt(body.get('client_assertion')!);
      assert.equal(claims.aud, tokenUrl);
      assert.equal(claims.iss, CLIENT_ID);
      assert.equal(claims.sub, CLIENT_ID);
    }
    assert.equal(new URL(lookalike.authorizeRequests.at(-1)!.get('redirect_uri')!).href, REDIRECT_URI);
  });

  test('multi-tenant (organizations) with a certificate: a tenant outside allowedTenants is refused', async () => {
    const idp = await createEntraIdp(organizations([OTHER_TENANT]), { redirectUri: REDIRECT_URI, allowInsecureHttp: true });
    const { request, callbackUrl } = await signIn(idp);
    await assert.rejects(idp.completeSignIn({ callbackUrl, ...request }), (error: unknown) => {
      assert.ok(error instanceof UpstreamRefusedError);
      assert.equal(error.upstreamError, 'access_denied');
      assert.match(error.message, new RegExp(`tenant ${ENTRA_TEST_TENANT} is not in upstream.entra.allowedTenants`));
      return true;
    });
  });
});

/** The certificate's public key as registered on the app: a JWK named by its x5t#S256. */
function certificateJwk(cert: string) {
  const jwk = createPublicKey(cert).export({ format: 'jwk' });
  const x5tS256 = Buffer.from(new X509Certificate(cert).fingerprint256.replace(/:/g, ''), 'hex').toString('base64url');
  return { ...jwk, use: 'sig', 'x5t#S256': x5tS256 };
}

function rsaCertificate(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cert-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=mcp-gateway-test',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
