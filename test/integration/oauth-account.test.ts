import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, mutableClock, startHarness } from '../support/gateway-harness.ts';
import { signInAtDevIdp } from '../support/headless-browser.ts';
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

describe('/account and upstream-driven revocation', () => {
  let gw: Harness;
  before(async () => {
    gw = await startHarness();
  });
  after(() => gw.close());

  it('lists the approved client; Revoke kills its refresh token and brings the consent page back', async () => {
    const { clientId, code, verifier, browser } = await obtainCode(gw.publicUrl);
    const tokens = await redeemCode(gw.publicUrl, { code, verifier, clientId });

    const account = await browser.get(`${gw.publicUrl}/account`);
    assert.equal(account.status, 200);
    assert.ok(account.body.includes('Alice Admin'));
    assert.ok(account.body.includes('Step Client'));
    assert.ok(account.body.includes('127.0.0.1:53682'), 'redirect host shown');

    // Another browser without the session cookie cannot revoke; a wrong CSRF token is refused.
    const anonymous = await postForm(gw.publicUrl, '/account/revoke', { client_id: clientId, csrf: 'x' });
    assert.equal(anonymous.status, 401);
    const forged = await postForm(gw.publicUrl, '/account/revoke', { client_id: clientId, csrf: 'forged' }, { cookie: browser.cookieHeader(gw.publicUrl) });
    assert.equal(forged.status, 403);

    const afterRevoke = await browser.submitForm(account, 'action="/account/revoke"', {});
    assert.equal(afterRevoke.status, 200);
    assert.ok(afterRevoke.body.includes('You have not approved any clients.'));

    assert.equal(await gw.ctx.grants.validateAccessToken(tokens.access_token), undefined);
    const refresh = await postForm(gw.publicUrl, '/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: clientId });
    assert.equal(refresh.status, 400);
    assert.equal(((await refresh.json()) as { error: string }).error, 'invalid_grant');

    const again = await browser.get(authorizeUrl(gw.publicUrl, defaultAuthorizeParams(gw.publicUrl, clientId, pkce().challenge)));
    assert.equal(again.status, 200);
    assert.ok(again.body.includes('name="decision"'), 'consent page shown again');
  });

  it('a remembered approval of another user in the same browser: consent is asked after sign-in', async () => {
    const { clientId, browser } = await obtainCode(gw.publicUrl);
    const start = authorizeUrl(gw.publicUrl, { ...defaultAuthorizeParams(gw.publicUrl, clientId, pkce().challenge), prompt: 'login' });
    const toClient = { stopAt: (l: URL) => l.href.startsWith(CLIENT_REDIRECT) };
    const signInPage = await browser.get(start, toClient);
    assert.ok(signInPage.body.includes('name="password"'), 'the approval cookie skipped the pre-sign-in consent');
    let consent = await signInAtDevIdp(browser, signInPage, 'bob', 'bob-password', toClient);
    // oidc-provider ends alice's IdP session first with an auto-submitting form (a browser's script would submit it).
    if (consent.body.includes('session/end/confirm')) consent = await browser.submitForm(consent, undefined, {}, toClient);
    assert.equal(consent.status, 200, consent.body.slice(0, 600));
    assert.ok(consent.body.includes('Signed in as <strong>Bob Builder</strong>'), consent.body.slice(0, 900));
    const done = await browser.submitForm(consent, 'action="/consent"', { decision: 'allow' }, toClient);
    assert.ok(done.stoppedAt?.searchParams.get('code'));
    const replay = await browser.submitForm(consent, 'action="/consent"', { decision: 'allow' }, toClient);
    assert.equal(replay.status, 400, 'the post-sign-in consent is single use');
  });

  it('/account without a session sends the browser to sign in first', async () => {
    const response = await fetch(`${gw.publicUrl}/account`, { redirect: 'manual' });
    assert.equal(response.status, 302);
    assert.ok(response.headers.get('location')!.startsWith(gw.devIdp!.issuer));
  });

  it('a user disabled at the IdP loses access at the next refresh', async () => {
    const { clientId, code, verifier } = await obtainCode(gw.publicUrl, { user: { login: 'bob', password: 'bob-password' } });
    const tokens = await redeemCode(gw.publicUrl, { code, verifier, clientId });
    gw.devIdp!.disableUser('bob');
    const refresh = await postForm(gw.publicUrl, '/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: clientId });
    assert.equal(refresh.status, 400);
    assert.deepEqual(await refresh.json(), {
      error: 'invalid_grant',
      error_description: 'the identity provider refused to renew the sign-in (invalid_grant)',
    });
    assert.equal(await gw.ctx.grants.validateAccessToken(tokens.access_token), undefined, 'the whole grant ended');
  });
});

describe('an IdP outage during refresh does not end the grant', () => {
  let gw: Harness;
  before(async () => {
    gw = await startHarness();
  });
  after(() => gw.close());

  it('answers 503 temporarily_unavailable and keeps the refresh token valid', async () => {
    const { clientId, code, verifier } = await obtainCode(gw.publicUrl);
    const tokens = await redeemCode(gw.publicUrl, { code, verifier, clientId });
    await gw.devIdp!.close();
    for (let attempt = 0; attempt < 2; attempt++) {
      const refresh = await postForm(gw.publicUrl, '/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: clientId });
      assert.equal(refresh.status, 503);
      assert.deepEqual(await refresh.json(), {
        error: 'temporarily_unavailable',
        error_description: 'the identity provider is unreachable; try again later',
      });
    }
    assert.ok(await gw.ctx.grants.validateAccessToken(tokens.access_token), 'the grant is intact');
  });
});

describe('/account: revocation reaches codes, and the page shows live access', () => {
  const clock = mutableClock();
  let gw: Harness;
  before(async () => {
    gw = await startHarness({ clock });
  });
  after(() => gw.close());

  it('Revoke at /account ends a code issued just before it: the code no longer redeems', async () => {
    const { clientId, code, verifier, browser } = await obtainCode(gw.publicUrl);
    const account = await browser.get(`${gw.publicUrl}/account`);
    await browser.submitForm(account, 'action="/account/revoke"', { client_id: clientId });
    const exchange = await exchangeCode(gw.publicUrl, { code, verifier, clientId });
    assert.equal(exchange.status, 400);
    assert.deepEqual(await exchange.json(), { error: 'invalid_grant', error_description: 'the user revoked access for this client' });
  });

  it('a code issued before Revoke stays dead after the user approves the client again', async () => {
    const clientId = await registerClient(gw.publicUrl);
    const first = await obtainCode(gw.publicUrl, { clientId });
    const account = await first.browser.get(`${gw.publicUrl}/account`);
    await first.browser.submitForm(account, 'action="/account/revoke"', { client_id: clientId });
    clock.advance(1);
    const again = await obtainCode(gw.publicUrl, { clientId, browser: first.browser });
    const stale = await exchangeCode(gw.publicUrl, { code: first.code, verifier: first.verifier, clientId });
    assert.equal(stale.status, 400);
    assert.equal(((await stale.json()) as { error: string }).error, 'invalid_grant');
    await redeemCode(gw.publicUrl, { code: again.code, verifier: again.verifier, clientId });
  });

  it('an approval whose grants are all gone is listed as "not connected (approval only)"', async () => {
    const { clientId, code, verifier, browser } = await obtainCode(gw.publicUrl);
    const tokens = await redeemCode(gw.publicUrl, { code, verifier, clientId });
    const row = new RegExp(`<code>${clientId}</code>[\\s\\S]*?<td class="access">([^<]*)</td>`);
    const accessOf = async () => row.exec((await browser.get(`${gw.publicUrl}/account`)).body)?.[1];
    assert.equal(await accessOf(), 'connected');
    const revoked = await postForm(gw.publicUrl, '/revoke', { token: tokens.refresh_token, client_id: clientId });
    assert.equal(revoked.status, 200);
    assert.equal(await accessOf(), 'not connected (approval only)');
  });

  it('a client holding a grant the user never consented to (an enterprise ID-JAG grant) is listed and revocable at /account', async () => {
    const { clientId, code, verifier, browser } = await obtainCode(gw.publicUrl);
    const alice = (await gw.ctx.grants.validateAccessToken((await redeemCode(gw.publicUrl, { code, verifier, clientId })).access_token))!;
    const agent = await registerClient(gw.publicUrl, { client_name: 'Enterprise Agent' });
    const { tokens } = await gw.ctx.grants.createAccessOnly({ user: alice.user, userKey: alice.userKey, clientId: agent, scopes: ['mcp:tools'], resource: gw.mcpUrl });
    const row = new RegExp(`<code>${agent}</code></small></td>\\s*<td>([^<]*)</td><td class="access">([^<]*)</td>`);
    const account = await browser.get(`${gw.publicUrl}/account`);
    assert.deepEqual(row.exec(account.body)?.slice(1), ['(no redirect: granted by your organisation)', 'connected']);
    await browser.submitForm(account, `value="${agent}"`, {});
    assert.equal(await gw.ctx.grants.validateAccessToken(tokens.access_token), undefined);
    assert.equal(row.exec((await browser.get(`${gw.publicUrl}/account`)).body), null, 'gone from the list');
  });

  it('client_name is shown without bidi overrides or control characters on the consent page and /account', async () => {
    const clientId = await registerClient(gw.publicUrl, { client_name: 'Evil\u202Egnp.exe\u0007\u200B\nTools' });
    const { browser, pages } = await obtainCode(gw.publicUrl, { clientId });
    const consent = pages.find((p) => p.body.includes('name="decision"'))!;
    const account = await browser.get(`${gw.publicUrl}/account`);
    for (const body of [consent.body, account.body]) {
      assert.ok(body.includes('Evilgnp.exe Tools'), body);
      for (const hidden of ['\u202E', '\u0007', '\u200B']) assert.ok(!body.includes(hidden), `U+${hidden.codePointAt(0)!.toString(16)} shown`);
    }
    assert.match(consent.body, /<strong id="redirect-host">127\.0\.0\.1:53682<\/strong>/);
  });
});

describe('a remembered approval covers only what the consent page showed', () => {
  let gw: Harness;
  before(async () => {
    gw = await startHarness({
      backends: [
        { name: 'tools', path: '/mcp', url: 'http://127.0.0.1:9/mcp', scopes: ['mcp:read', 'mcp:write'] },
        { name: 'github', path: '/github/mcp', url: 'http://127.0.0.1:9/mcp', scopes: ['gh:tools'] },
      ],
    });
  });
  after(() => gw.close());

  it('a wider scope or another resource shows the consent page again', async () => {
    const base = gw.publicUrl;
    const clientId = await registerClient(base);
    const narrow = { ...defaultAuthorizeParams(base, clientId, pkce().challenge), scope: 'mcp:read' };
    const { browser } = await obtainCode(base, { clientId, start: authorizeUrl(base, narrow) });
    const ask = async (params: Record<string, string>) =>
      fetch(authorizeUrl(base, { ...defaultAuthorizeParams(base, clientId, pkce().challenge), ...params }), {
        redirect: 'manual',
        headers: { cookie: browser.cookieHeader(base) },
      });
    assert.equal((await ask({ scope: 'mcp:read' })).status, 302, 'the same request goes straight to sign-in');
    assert.equal((await ask({ scope: 'mcp:read mcp:write' })).status, 200, 'a wider scope asks again');
    assert.equal((await ask({ resource: `${base}/github/mcp`, scope: 'gh:tools' })).status, 200, 'another resource asks again');
  });
});
