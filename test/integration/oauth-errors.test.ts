import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { COOKIE } from '../../src/oauth/cookies.ts';
import { Agent, request } from 'undici';
import { type Harness, mutableClock, startHarness } from '../support/gateway-harness.ts';
import { createHeadlessBrowser, signInAtDevIdp } from '../support/headless-browser.ts';
import {
  authorizeUrl,
  CLIENT_REDIRECT,
  defaultAuthorizeParams,
  exchangeCode,
  obtainCode,
  pkce,
  postForm,
  redeemCode,
  registerClient,
} from '../support/oauth-steps.ts';

type Json = Record<string, unknown>;
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** Configured clients that may not use the code flow, though they name a redirect URI. */
const NO_CODE_CLIENTS = [
  { clientId: 'nightly-job', secret: 'job-secret', grantTypes: ['client_credentials'], redirectUris: [CLIENT_REDIRECT] },
  { clientId: 'pulling-backend', secret: 'backend-secret', grantTypes: [TOKEN_EXCHANGE], redirectUris: [CLIENT_REDIRECT] },
];
/** A configured client of the code flow that is not registered for refresh_token. */
const NO_REFRESH_CLIENT = { clientId: 'code-only-app', secret: 'app-secret', grantTypes: ['authorization_code'], redirectUris: [CLIENT_REDIRECT] };

describe('authorization server: bad input gets the exact error', () => {
  const clock = mutableClock();
  let gw: Harness;
  let base: string;
  let clientId: string;
  before(async () => {
    gw = await startHarness({ clock, config: { clients: [...NO_CODE_CLIENTS, NO_REFRESH_CLIENT] } });
    base = gw.publicUrl;
    clientId = await registerClient(base);
  });
  after(() => gw.close());

  async function authorize(params: Record<string, string | undefined>) {
    return fetch(authorizeUrl(base, params), { redirect: 'manual', headers: { accept: 'text/html' } });
  }

  describe('/authorize before the client is verified: an error page, never a redirect', () => {
    const cases: [string, (p: Record<string, string>) => Record<string, string | undefined>, string][] = [
      ['missing client_id', (p) => ({ ...p, client_id: undefined }), 'invalid_request: client_id is required'],
      ['unknown client_id', (p) => ({ ...p, client_id: 'nobody' }), 'invalid_client: unknown client_id'],
      ['malformed URL client_id', (p) => ({ ...p, client_id: 'https://a b/x' }), 'invalid_client: client_id is not a valid URL'],
      [
        'unregistered redirect_uri',
        (p) => ({ ...p, redirect_uri: 'https://evil.example.com/cb' }),
        'invalid_request: redirect_uri is not registered for this client',
      ],
      [
        'registered loopback redirect_uri with a fragment (RFC 6749 §3.1.2)',
        (p) => ({ ...p, redirect_uri: 'http://127.0.0.1:40000/callback#frag' }),
        'invalid_request: redirect_uri is not registered for this client',
      ],
      // RFC 6749 §4.1.2.1: a client not registered for the code grant (RFC 7591 §2: grant_types).
      [
        'configured client registered only for client_credentials',
        (p) => ({ ...p, client_id: 'nightly-job' }),
        'unauthorized_client: client is not registered for grant_type authorization_code',
      ],
      [
        'configured client registered only for token-exchange',
        (p) => ({ ...p, client_id: 'pulling-backend' }),
        'unauthorized_client: client is not registered for grant_type authorization_code',
      ],
      [
        'dynamically registered client whose grant_types leave out authorization_code',
        (p) => ({ ...p, client_id: refreshOnlyClientId }),
        'unauthorized_client: client is not registered for grant_type authorization_code',
      ],
    ];
    let refreshOnlyClientId: string;
    before(async () => {
      refreshOnlyClientId = await registerClient(base, { grant_types: ['refresh_token'] });
    });
    for (const [name, change, message] of cases) {
      it(name, async () => {
        const response = await authorize(change(defaultAuthorizeParams(base, clientId, pkce().challenge)));
        assert.equal(response.status, 400);
        assert.equal(response.headers.get('location'), null);
        assert.equal(response.headers.get('content-security-policy')?.includes("frame-ancestors 'none'"), true);
        assert.ok((await response.text()).includes(message));
      });
    }
  });

  describe('/authorize after verification: the error with state and iss, redirected only for an approved client', () => {
    let approvedCookie: string;
    before(async () => {
      approvedCookie = (await obtainCode(base, { clientId })).browser.cookieHeader(base);
    });

    const cases: [string, (p: Record<string, string>) => Record<string, string | undefined>, string, string][] = [
      ['missing PKCE', (p) => ({ ...p, code_challenge: undefined, code_challenge_method: undefined }), 'invalid_request', 'code_challenge is required (PKCE)'],
      ['plain PKCE', (p) => ({ ...p, code_challenge_method: 'plain' }), 'invalid_request', 'code_challenge_method must be S256'],
      ['response_type token', (p) => ({ ...p, response_type: 'token' }), 'unsupported_response_type', 'response_type must be code'],
      ['unknown resource', (p) => ({ ...p, resource: 'https://other.example.com/mcp' }), 'invalid_target', 'resource https://other.example.com/mcp is not served by this gateway'],
      ['unknown scope', (p) => ({ ...p, scope: 'admin:all' }), 'invalid_scope', 'unknown scope: admin:all'],
    ];
    const assertErrorUrl = (target: URL, error: string, description: string) => {
      assert.equal(`${target.origin}${target.pathname}`, CLIENT_REDIRECT);
      assert.equal(target.searchParams.get('error'), error);
      assert.equal(target.searchParams.get('error_description'), description);
      assert.equal(target.searchParams.get('state'), 'client-state-1');
      assert.equal(target.searchParams.get('iss'), base);
    };
    for (const [name, change, error, description] of cases) {
      it(`${name}: redirected in a browser that approved the client`, async () => {
        const url = authorizeUrl(base, change(defaultAuthorizeParams(base, clientId, pkce().challenge)));
        const response = await fetch(url, { redirect: 'manual', headers: { cookie: approvedCookie } });
        assert.equal(response.status, 302);
        assertErrorUrl(new URL(response.headers.get('location')!), error, description);
      });
      it(`${name}: otherwise an error page with a link back (no open redirect)`, async () => {
        const response = await authorize(change(defaultAuthorizeParams(base, clientId, pkce().challenge)));
        assert.equal(response.status, 400);
        assert.equal(response.headers.get('location'), null);
        const body = await response.text();
        assert.ok(body.includes(`${error}: ${description}`));
        const href = /id="return" href="([^"]+)"/.exec(body)![1]!.replace(/&#38;/g, '&');
        assertErrorUrl(new URL(href), error, description);
      });
    }
  });

  describe('/token', () => {
    it('wrong verifier → invalid_grant', async () => {
      const { code, clientId: id } = await obtainCode(base);
      const response = await exchangeCode(base, { code, verifier: pkce().verifier, clientId: id });
      assert.equal(response.status, 400);
      assert.deepEqual(await response.json(), { error: 'invalid_grant', error_description: 'code_verifier does not match the code_challenge' });
      assert.equal(response.headers.get('cache-control'), 'no-store');
    });

    it('reused code → invalid_grant and the tokens it issued are dead', async () => {
      const { code, verifier, clientId: id } = await obtainCode(base);
      const first = await exchangeCode(base, { code, verifier, clientId: id });
      assert.equal(first.status, 200);
      const tokens = (await first.json()) as { access_token: string; refresh_token: string };
      assert.ok(await gw.ctx.grants.validateAccessToken(tokens.access_token));
      const replay = await exchangeCode(base, { code, verifier, clientId: id });
      assert.equal(replay.status, 400);
      assert.deepEqual(await replay.json(), {
        error: 'invalid_grant',
        error_description: 'authorization code was already used; tokens issued from it are revoked',
      });
      assert.equal(await gw.ctx.grants.validateAccessToken(tokens.access_token), undefined);
      const refresh = await postForm(base, '/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: id });
      assert.equal(((await refresh.json()) as Json).error, 'invalid_grant');
    });

    // RFC 6749 §5.1: the refresh token is optional; a client that may not redeem one gets none,
    // and its grant is still listed and revocable at /account.
    const noRefreshCases: [string, () => Promise<string>, Record<string, string>][] = [
      ['dynamically registered client with grant_types [authorization_code]', () => registerClient(base, { grant_types: ['authorization_code'] }), {}],
      ['configured client with grantTypes [authorization_code]', async () => NO_REFRESH_CLIENT.clientId, { client_secret: NO_REFRESH_CLIENT.secret }],
    ];
    for (const [name, clientOf, credentials] of noRefreshCases) {
      it(`${name}: the code exchange issues no refresh token; /account lists and revokes the grant`, async () => {
        const { code, verifier, clientId: id, browser } = await obtainCode(base, { clientId: await clientOf() });
        const response = await postForm(base, '/token', {
          grant_type: 'authorization_code',
          code,
          code_verifier: verifier,
          client_id: id,
          redirect_uri: CLIENT_REDIRECT,
          ...credentials,
        });
        assert.equal(response.status, 200);
        const tokens = (await response.json()) as Json;
        assert.deepEqual(Object.keys(tokens).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
        assert.equal(tokens['token_type'], 'Bearer');
        assert.ok(await gw.ctx.grants.validateAccessToken(tokens['access_token'] as string));
        const row = new RegExp(`<code>${id}</code>[\\s\\S]*?<td class="access">([^<]*)</td>`);
        const account = await browser.get(`${base}/account`);
        assert.equal(row.exec(account.body)?.[1], 'connected');
        await browser.submitForm(account, 'action="/account/revoke"', { client_id: id });
        assert.equal(await gw.ctx.grants.validateAccessToken(tokens['access_token'] as string), undefined);
      });
    }

    it('expired code → invalid_grant', async () => {
      const { code, verifier, clientId: id } = await obtainCode(base);
      clock.advance(301);
      const response = await exchangeCode(base, { code, verifier, clientId: id });
      assert.deepEqual(await response.json(), { error: 'invalid_grant', error_description: 'unknown or expired authorization code' });
    });

    it("another client's code → invalid_grant", async () => {
      const { code, verifier } = await obtainCode(base);
      const other = await registerClient(base, { client_name: 'Other' });
      const response = await exchangeCode(base, { code, verifier, clientId: other });
      assert.deepEqual(await response.json(), { error: 'invalid_grant', error_description: 'authorization code was issued to another client' });
    });

    it('resource differing from the authorization request → invalid_target', async () => {
      const { code, verifier, clientId: id } = await obtainCode(base);
      const response = await exchangeCode(base, { code, verifier, clientId: id, resource: 'https://elsewhere.example.com/mcp' });
      assert.equal(response.status, 400);
      assert.equal(((await response.json()) as Json).error, 'invalid_target');
    });

    const badBodies: [string, () => Promise<Response>, number, Json][] = [
      ['missing grant_type', () => postForm(base, '/token', { client_id: 'x' }), 400, { error: 'invalid_request', error_description: 'grant_type is required' }],
      [
        'unknown client',
        () => postForm(base, '/token', { grant_type: 'authorization_code', client_id: 'nobody', code: 'c', code_verifier: 'v' }),
        401,
        { error: 'invalid_client', error_description: 'unknown client_id' },
      ],
      [
        'client_credentials-only configured client redeeming a code',
        () => postForm(base, '/token', { grant_type: 'authorization_code', client_id: 'nightly-job', client_secret: 'job-secret', code: 'c', code_verifier: 'v' }),
        400,
        { error: 'unauthorized_client', error_description: 'client is not registered for grant_type authorization_code' },
      ],
      [
        'token-exchange-only configured client asking for client_credentials',
        () => postForm(base, '/token', { grant_type: 'client_credentials', client_id: 'pulling-backend', client_secret: 'backend-secret' }),
        400,
        { error: 'unauthorized_client', error_description: 'client is not registered for grant_type client_credentials' },
      ],
      [
        'dynamically registered client asking for client_credentials',
        () => postForm(base, '/token', { grant_type: 'client_credentials', client_id: clientId }),
        400,
        { error: 'unauthorized_client', error_description: 'client is not registered for grant_type client_credentials' },
      ],
      [
        'unsupported grant type',
        () => postForm(base, '/token', { grant_type: 'password', client_id: clientId }),
        400,
        { error: 'unsupported_grant_type', error_description: 'grant_type password is not supported' },
      ],
      [
        'repeated parameter',
        () =>
          fetch(`${base}/token`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: 'grant_type=authorization_code&grant_type=refresh_token',
          }),
        400,
        { error: 'invalid_request', error_description: 'parameter grant_type must appear once' },
      ],
      [
        'JSON instead of a form',
        () => fetch(`${base}/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"grant_type":"refresh_token"}' }),
        400,
        { error: 'invalid_request', error_description: 'the token endpoint takes application/x-www-form-urlencoded bodies' },
      ],
      [
        'oversized body',
        () => postForm(base, '/token', { grant_type: 'authorization_code', pad: 'x'.repeat(70 * 1024) }),
        413,
        { error: 'invalid_request', error_description: 'request body is too large' },
      ],
    ];
    for (const [name, send, status, body] of badBodies) {
      it(name, async () => {
        const response = await send();
        assert.equal(response.status, status);
        assert.deepEqual(await response.json(), body);
      });
    }
  });

  describe('/register', () => {
    const cases: [string, string, string, number, Json][] = [
      ['malformed JSON', 'application/json', '{"redirect_uris": [', 400, { error: 'invalid_request', error_description: 'request body is not valid JSON' }],
      ['not JSON', 'text/plain', 'hello', 400, { error: 'invalid_client_metadata', error_description: 'registration requests must be application/json (RFC 7591 §3.1)' }],
      ['no redirect_uris', 'application/json', '{"client_name":"x"}', 400, { error: 'invalid_redirect_uri', error_description: 'redirect_uris must be a non-empty array' }],
      [
        'http redirect off loopback',
        'application/json',
        '{"redirect_uris":["http://evil.example.com/cb"]}',
        400,
        { error: 'invalid_redirect_uri', error_description: 'redirect_uri "http://evil.example.com/cb": http is allowed only on loopback hosts' },
      ],
      ['array body', 'application/json', '[]', 400, { error: 'invalid_client_metadata', error_description: 'registration request must be a JSON object' }],
      [
        'hostile auth method value',
        'application/json',
        '{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":{"toString":1}}',
        400,
        { error: 'invalid_client_metadata', error_description: 'token_endpoint_auth_method {"toString":1} is not supported' },
      ],
      [
        'client_uri not a URL',
        'application/json',
        '{"redirect_uris":["https://a.example/cb"],"client_uri":"my app"}',
        400,
        { error: 'invalid_client_metadata', error_description: 'client_uri: Invalid URL' },
      ],
      [
        'javascript: logo_uri',
        'application/json',
        '{"redirect_uris":["https://a.example/cb"],"logo_uri":"javascript:alert(1)"}',
        400,
        { error: 'invalid_client_metadata', error_description: 'logo_uri: URL cannot use javascript:, data:, or vbscript: scheme' },
      ],
      ['oversized', 'application/json', JSON.stringify({ redirect_uris: [CLIENT_REDIRECT], pad: 'x'.repeat(70 * 1024) }), 413, { error: 'invalid_request', error_description: 'request body is too large' }],
      [
        'a 60 KB redirect_uri',
        'application/json',
        JSON.stringify({ redirect_uris: [`https://app.example.com/${'x'.repeat(60 * 1024)}`] }),
        400,
        { error: 'invalid_redirect_uri', error_description: `redirect_uri "https://app.example.com/${'x'.repeat(75)}…: must be at most 2048 characters` },
      ],
    ];
    for (const [name, type, body, status, expected] of cases) {
      it(name, async () => {
        const response = await fetch(`${base}/register`, { method: 'POST', headers: { 'content-type': type }, body });
        assert.equal(response.status, status);
        assert.deepEqual(await response.json(), expected);
      });
    }
  });

  describe('consent', () => {
    async function consentPage() {
      const browser = createHeadlessBrowser();
      const page = await browser.get(authorizeUrl(base, defaultAuthorizeParams(base, clientId, pkce().challenge)));
      assert.equal(page.status, 200);
      assert.ok(page.body.includes('name="decision"'));
      const requestId = /name="request" value="([^"]+)"/.exec(page.body)![1]!;
      const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)![1]!;
      return { browser, page, requestId, csrf };
    }

    it('missing CSRF token → 403', async () => {
      const { browser, requestId } = await consentPage();
      const response = await postForm(base, '/consent', { request: requestId, decision: 'allow' }, { cookie: browser.cookieHeader(base) });
      assert.equal(response.status, 403);
      assert.ok((await response.text()).includes('missing or invalid CSRF token'));
    });

    it('wrong CSRF token, or the right token from another browser → 403', async () => {
      const { browser, requestId, csrf } = await consentPage();
      const wrong = await postForm(base, '/consent', { request: requestId, csrf: `${csrf}x`, decision: 'allow' }, { cookie: browser.cookieHeader(base) });
      assert.equal(wrong.status, 403);
      const noCookie = await postForm(base, '/consent', { request: requestId, csrf, decision: 'allow' });
      assert.equal(noCookie.status, 403);
    });

    it('deny → access_denied at the client', async () => {
      const { browser, page } = await consentPage();
      const denied = await browser.submitForm(page, 'action="/consent"', { decision: 'deny' }, { stopAt: (l) => l.href.startsWith(CLIENT_REDIRECT) });
      assert.equal(denied.stoppedAt?.searchParams.get('error'), 'access_denied');
      assert.equal(denied.stoppedAt?.searchParams.get('state'), 'client-state-1');
      assert.equal(denied.stoppedAt?.searchParams.get('iss'), base);
    });

    it('a forged or expired consent cookie is ignored: the consent page is shown', async () => {
      const forged = gw.ctx.signer.sign({ approvals: [] }).replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
      for (const value of [forged, 'garbage', gw.ctx.signer.sign({ approvals: [{ binding: 'x', expiresAt: 1 }] })]) {
        const response = await fetch(authorizeUrl(base, defaultAuthorizeParams(base, clientId, pkce().challenge)), {
          redirect: 'manual',
          headers: { cookie: `${COOKIE.consent}=${value}` },
        });
        assert.equal(response.status, 200);
        assert.ok((await response.text()).includes('name="decision"'));
      }
    });

    it('a remembered approval skips the consent page for that client only', async () => {
      const { browser } = await obtainCode(base, { clientId });
      const again = await fetch(authorizeUrl(base, defaultAuthorizeParams(base, clientId, pkce().challenge)), {
        redirect: 'manual',
        headers: { cookie: browser.cookieHeader(base) },
      });
      assert.equal(again.status, 302, 'straight to the IdP');
      assert.ok(new URL(again.headers.get('location')!).pathname.endsWith('/auth'));
      const other = await registerClient(base, { client_name: 'Other' });
      const otherResponse = await fetch(authorizeUrl(base, defaultAuthorizeParams(base, other, pkce().challenge)), {
        redirect: 'manual',
        headers: { cookie: browser.cookieHeader(base) },
      });
      assert.equal(otherResponse.status, 200);
    });
  });

  describe('/callback', () => {
    it("a sign-in URL from one browser's consent cannot complete in another browser (confused deputy)", async () => {
      const attacker = createHeadlessBrowser();
      const consent = await attacker.get(authorizeUrl(base, defaultAuthorizeParams(base, clientId, pkce().challenge)));
      const toIdp = await attacker.submitForm(consent, 'action="/consent"', { decision: 'allow' }, { stopAt: (l) => l.pathname.endsWith('/auth') });
      assert.ok(toIdp.stoppedAt, 'the attacker stops at the IdP redirect');
      const victim = createHeadlessBrowser();
      const signIn = await victim.get(toIdp.stoppedAt);
      const result = await signInAtDevIdp(victim, signIn, 'bob', 'bob-password', { stopAt: (l) => l.href.startsWith(CLIENT_REDIRECT) });
      assert.equal(result.stoppedAt, undefined, 'no code reached the client');
      assert.equal(result.status, 400);
      assert.ok(result.body.includes('this sign-in was started in another browser'));
    });

    it("after a planted sign-in, the attacker's pre-sign-in CSRF token cannot confirm the victim's consent", async () => {
      const evil = await registerClient(base, { client_name: 'Evil' });
      const attacker = createHeadlessBrowser();
      const consent = await attacker.get(authorizeUrl(base, defaultAuthorizeParams(base, evil, pkce().challenge)));
      const requestId = /name="request" value="([^"]+)"/.exec(consent.body)?.[1];
      const csrf = /name="csrf" value="([^"]+)"/.exec(consent.body)?.[1];
      assert.ok(requestId && csrf);
      const toIdp = await attacker.submitForm(consent, 'action="/consent"', { decision: 'allow' }, { stopAt: (l) => l.pathname.endsWith('/auth') });
      const plantedCookie = attacker.cookieHeader(base).split('; ').find((c) => c.startsWith(`${COOKIE.browser}=`))!;
      // A page on another port of the gateway's host sets the attacker's browser cookie for it.
      const lure = createServer((_req, res) => res.writeHead(302, { 'set-cookie': `${plantedCookie}; Path=/; Secure; HttpOnly`, location: toIdp.stoppedAt!.href }).end());
      await new Promise<void>((resolve) => lure.listen(0, '127.0.0.1', resolve));
      try {
        const victim = createHeadlessBrowser();
        const signIn = await victim.get(`http://localhost:${(lure.address() as AddressInfo).port}/`);
        const asked = await signInAtDevIdp(victim, signIn, 'bob', 'bob-password', { stopAt: (l) => l.href.startsWith(CLIENT_REDIRECT) });
        assert.equal(asked.stoppedAt, undefined, 'no code before Bob confirms');
        assert.ok(asked.body.includes('Signed in as <strong>Bob Builder</strong>'));
        const replayed = await postForm(base, '/consent', { request: requestId, csrf, decision: 'allow' }, { cookie: attacker.cookieHeader(base) });
        assert.equal(replayed.status, 403);
        assert.ok((await replayed.text()).includes('missing or invalid CSRF token'));
        assert.equal(replayed.headers.get('location'), null);
      } finally {
        await new Promise<void>((resolve) => lure.close(() => resolve()));
      }
    });

    it('unknown state → 400 page', async () => {
      const response = await fetch(`${base}/callback?code=abc&state=never-issued`);
      assert.equal(response.status, 400);
      assert.ok((await response.text()).includes('unknown, expired or already used state'));
    });

    it('replayed state → 400 page', async () => {
      const { pages, browser } = await obtainCode(base, { clientId });
      assert.ok(pages.length > 0);
      // Replay the IdP's redirect to /callback: find it by walking the flow again without following it.
      const fresh = await fetch(authorizeUrl(base, defaultAuthorizeParams(base, clientId, pkce().challenge)), {
        redirect: 'manual',
        headers: { cookie: browser.cookieHeader(base) },
      });
      const idpUrl = fresh.headers.get('location')!;
      const callback = await browser.followUntil(idpUrl, (l) => l.pathname === '/callback');
      const first = await browser.get(callback, { stopAt: (l) => l.href.startsWith(CLIENT_REDIRECT) });
      assert.ok(first.stoppedAt?.searchParams.get('code'));
      const replay = await fetch(callback);
      assert.equal(replay.status, 400);
      assert.ok((await replay.text()).includes('unknown, expired or already used state'));
    });
  });
});

describe('rate limits', () => {
  let gw: Harness;
  before(async () => {
    gw = await startHarness({ config: { rateLimits: { registrationsPerHour: 2, tokenRequestsPerMinute: 3, authorizationsPerMinute: 2 } } });
  });
  after(() => gw.close());

  it('registration: the third in an hour from one address gets 429 with Retry-After', async () => {
    await registerClient(gw.publicUrl);
    await registerClient(gw.publicUrl);
    const third = await fetch(`${gw.publicUrl}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: [CLIENT_REDIRECT] }),
    });
    assert.equal(third.status, 429);
    const retryAfter = Number(third.headers.get('retry-after'));
    assert.ok(retryAfter > 0 && retryAfter <= 3600);
    assert.deepEqual(await third.json(), {
      error: 'temporarily_unavailable',
      error_description: `too many registration requests from this address; retry in ${retryAfter} s`,
    });
  });

  it('authorization: the third in a minute gets 429', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await fetch(`${gw.publicUrl}/authorize?client_id=nobody`, { redirect: 'manual' })).status);
    assert.deepEqual(statuses, [400, 400, 429]);
  });

  it('token: the fourth in a minute gets 429', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await postForm(gw.publicUrl, '/token', { grant_type: 'refresh_token', client_id: 'x' })).status);
    assert.deepEqual(statuses, [401, 401, 401, 429]);
  });
});

describe('revocation (RFC 7009): bounded, and no lookup of unknown metadata documents', () => {
  const clock = mutableClock();
  let gw: Harness;
  let documentHost: Server;
  let documentRequests = 0;
  before(async () => {
    gw = await startHarness({ clock, config: { rateLimits: { registrationsPerHour: 30, tokenRequestsPerMinute: 3, authorizationsPerMinute: 120 } } });
    documentHost = createServer((_request, response) => {
      documentRequests++;
      response.writeHead(404).end();
    });
    await new Promise<void>((resolve) => documentHost.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    documentHost.close();
    await gw.close();
  });

  it('a /revoke with a metadata-document client_id fetches nothing and stores no client record', async () => {
    const clientId = `http://127.0.0.1:${(documentHost.address() as AddressInfo).port}/client.json`;
    const response = await postForm(gw.publicUrl, '/revoke', { token: 'mcpgw_rt_unknown', client_id: clientId });
    assert.equal(response.status, 200, 'RFC 7009 §2.2: an unknown token is answered 200');
    assert.equal(documentRequests, 0);
    assert.equal(await gw.ctx.store.get(`client:${clientId}`), undefined);
    assert.equal(await gw.ctx.store.get(`client-failed:${clientId}`), undefined);
  });

  it('the fourth /revoke in a minute from one address gets 429 with Retry-After, sharing the token budget', async () => {
    clock.advance(60);
    const revoke = () => postForm(gw.publicUrl, '/revoke', { token: 'mcpgw_at_unknown', client_id: 'nobody' });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await revoke()).status);
    assert.deepEqual(statuses, [401, 401, 401]);
    const fourth = await revoke();
    assert.equal(fourth.status, 429);
    const retryAfter = Number(fourth.headers.get('retry-after'));
    assert.ok(retryAfter > 0 && retryAfter <= 60);
    assert.deepEqual(await fourth.json(), {
      error: 'temporarily_unavailable',
      error_description: `too many token requests from this address; retry in ${retryAfter} s`,
    });
    assert.equal((await postForm(gw.publicUrl, '/token', { grant_type: 'refresh_token', client_id: 'x' })).status, 429);
    clock.advance(retryAfter);
    assert.equal((await revoke()).status, 401, 'the next window starts afresh');
  });
});

describe('dynamic registrations expire unused, and are bounded for the whole gateway', () => {
  const DAY = 86400;
  const clock = mutableClock();
  let gw: Harness;
  before(async () => {
    gw = await startHarness({
      clock,
      config: {
        tokens: { refreshTokenTtlSeconds: 90 * DAY },
        rateLimits: { registrationsPerHour: 30, registrationsPerDay: 5, tokenRequestsPerMinute: 300, authorizationsPerMinute: 120 },
      },
    });
  });
  after(() => gw.close());

  async function authorizePage(clientId: string) {
    const response = await fetch(authorizeUrl(gw.publicUrl, defaultAuthorizeParams(gw.publicUrl, clientId, pkce().challenge)), { redirect: 'manual' });
    return { status: response.status, body: await response.text() };
  }

  it('a client unused for 30 days + 1 s is gone (invalid_client)', async () => {
    const clientId = await registerClient(gw.publicUrl);
    clock.advance(30 * DAY - 1);
    assert.equal((await authorizePage(clientId)).status, 200, 'alive until the 30 days are over');
    const fresh = await registerClient(gw.publicUrl);
    clock.advance(30 * DAY + 1);
    const page = await authorizePage(fresh);
    assert.equal(page.status, 400);
    assert.ok(page.body.includes('invalid_client: unknown client_id'));
    const token = await postForm(gw.publicUrl, '/token', { grant_type: 'refresh_token', refresh_token: 'x', client_id: fresh });
    assert.equal(token.status, 401);
    assert.deepEqual(await token.json(), { error: 'invalid_client', error_description: 'unknown client_id' });
  });

  it('a client used on day 29 lives on', async () => {
    const clientId = await registerClient(gw.publicUrl);
    clock.advance(29 * DAY);
    assert.equal((await authorizePage(clientId)).status, 200);
    clock.advance(29 * DAY);
    assert.equal((await authorizePage(clientId)).status, 200, 'day 58: 29 days after its last use');
  });

  it('a client holding a grant lives as long as the grant, though unused longer than 30 days', async () => {
    const { clientId, code, verifier } = await obtainCode(gw.publicUrl);
    await redeemCode(gw.publicUrl, { code, verifier, clientId });
    clock.advance(60 * DAY);
    assert.equal((await authorizePage(clientId)).status, 200, 'the grant (90 days) keeps its client');
  });

  it('registrations beyond registrationsPerDay get 429 with Retry-After, from any address', async () => {
    clock.advance(DAY); // a fresh day window
    const fromOtherAddress = new Agent({ localAddress: '127.0.0.2' });
    const register = (dispatcher?: Agent) =>
      request(`${gw.publicUrl.replace('localhost', '127.0.0.1')}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ redirect_uris: [CLIENT_REDIRECT] }),
        ...(dispatcher ? { dispatcher } : {}),
      });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const response = await register(i % 2 === 0 ? undefined : fromOtherAddress);
      await response.body.dump();
      statuses.push(response.statusCode);
    }
    assert.deepEqual(statuses, [201, 201, 201, 201, 201]);
    const sixth = await register(fromOtherAddress);
    assert.equal(sixth.statusCode, 429);
    const retryAfter = Number(sixth.headers['retry-after']);
    assert.ok(retryAfter > 0 && retryAfter <= DAY);
    assert.deepEqual(await sixth.body.json(), {
      error: 'temporarily_unavailable',
      error_description: `too many registration requests to this gateway; retry in ${retryAfter} s`,
    });
    await fromOtherAddress.close();
  });
});
