import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness } from '../support/gateway-harness.ts';
import { authorizeUrl, defaultAuthorizeParams, exchangeCode, obtainCode, pkce, postForm } from '../support/oauth-steps.ts';

describe('/account and upstream-driven revocation', () => {
  let gw: Harness;
  before(async () => {
    gw = await startHarness();
  });
  after(() => gw.close());

  it('lists the approved client; Revoke kills its refresh token and brings the consent page back', async () => {
    const { clientId, code, verifier, browser } = await obtainCode(gw.publicUrl);
    const tokens = (await (await exchangeCode(gw.publicUrl, { code, verifier, clientId })).json()) as { refresh_token: string; access_token: string };

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

  it('/account without a session sends the browser to sign in first', async () => {
    const response = await fetch(`${gw.publicUrl}/account`, { redirect: 'manual' });
    assert.equal(response.status, 302);
    assert.ok(response.headers.get('location')!.startsWith(gw.devIdp!.issuer));
  });

  it('a user disabled at the IdP loses access at the next refresh', async () => {
    const { clientId, code, verifier } = await obtainCode(gw.publicUrl, { user: { login: 'bob', password: 'bob-password' } });
    const tokens = (await (await exchangeCode(gw.publicUrl, { code, verifier, clientId })).json()) as { refresh_token: string; access_token: string };
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
