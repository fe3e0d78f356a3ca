import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { type Harness, mutableClock, startHarness } from '../support/gateway-harness.ts';
import { postForm } from '../support/oauth-steps.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

/** Discovery → registration → consent → dev sign-in → token → refresh → revoke, with the SDK's auth(). */
describe('sign-in with the MCP SDK auth flow (dev IdP)', () => {
  const clock = mutableClock();
  let gateway: Harness;
  before(async () => {
    gateway = await startHarness({ clock });
  });
  after(() => gateway.close());

  it('DCR client: full flow, refresh rotates, reuse revokes, revoke ends access', async () => {
    const provider = new HeadlessOAuthProvider({ login: 'alice', password: 'alice-password' });
    assert.equal(await auth(provider, { serverUrl: gateway.mcpUrl }), 'REDIRECT');
    const info = provider.clientInformation();
    assert.match(info?.client_id ?? '', /^mcpgw_client_/);
    assert.ok(provider.pages.some((p) => p.body.includes('Headless Test Client')), 'consent page names the client');
    assert.equal(provider.redirectedTo?.searchParams.get('iss'), gateway.publicUrl);
    assert.equal(await auth(provider, { serverUrl: gateway.mcpUrl, authorizationCode: provider.authorizationCode! }), 'AUTHORIZED');
    const first = provider.tokens()!;
    assert.match(first.access_token, /^mcpgw_at_/);
    assert.match(first.refresh_token ?? '', /^mcpgw_rt_/);
    assert.equal(first.scope, 'mcp:tools');

    const record = await gateway.ctx.grants.validateAccessToken(first.access_token);
    assert.equal(record?.user.name, 'Alice Admin');
    assert.deepEqual(record?.user.roles, ['admin']);
    assert.equal(record?.resource, gateway.mcpUrl);

    // Refresh (the SDK refreshes when it holds a refresh token).
    assert.equal(await auth(provider, { serverUrl: gateway.mcpUrl }), 'AUTHORIZED');
    const second = provider.tokens()!;
    assert.notEqual(second.refresh_token, first.refresh_token);
    assert.ok(await gateway.ctx.grants.validateAccessToken(second.access_token));

    // Within the reuse interval (2 s) a retry with the rotated token gets the same pair back.
    const retry = await postForm(gateway.publicUrl, '/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token!, client_id: info!.client_id });
    assert.equal(retry.status, 200);
    const retried = (await retry.json()) as Record<string, unknown>;
    assert.deepEqual([retried['access_token'], retried['refresh_token']], [second.access_token, second.refresh_token]);

    // After it, reusing the rotated refresh token revokes the grant (both tokens die).
    clock.advance(2);
    const reuse = await postForm(gateway.publicUrl, '/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token!, client_id: info!.client_id });
    assert.equal(reuse.status, 400);
    assert.deepEqual(await reuse.json(), {
      error: 'invalid_grant',
      error_description: 'refresh token was already used; the grant has been revoked',
    });
    assert.equal(await gateway.ctx.grants.validateAccessToken(second.access_token), undefined);
    const afterRevoke = await postForm(gateway.publicUrl, '/token', { grant_type: 'refresh_token', refresh_token: second.refresh_token!, client_id: info!.client_id });
    assert.equal(((await afterRevoke.json()) as { error: string }).error, 'invalid_grant');
  });

  it('revoke (RFC 7009): access token alone, then refresh token ends the grant', async () => {
    const provider = new HeadlessOAuthProvider({ login: 'bob', password: 'bob-password' });
    await auth(provider, { serverUrl: gateway.mcpUrl });
    await auth(provider, { serverUrl: gateway.mcpUrl, authorizationCode: provider.authorizationCode! });
    const tokens = provider.tokens()!;
    const clientId = provider.clientInformation()!.client_id;
    const revokeAccess = await postForm(gateway.publicUrl, '/revoke', { token: tokens.access_token, client_id: clientId });
    assert.equal(revokeAccess.status, 200);
    assert.equal(revokeAccess.headers.get('cache-control'), 'no-store');
    assert.equal(await gateway.ctx.grants.validateAccessToken(tokens.access_token), undefined);
    const refreshed = await postForm(gateway.publicUrl, '/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: clientId });
    assert.equal(refreshed.status, 200);
    const next = (await refreshed.json()) as { refresh_token: string; access_token: string };
    assert.equal((await postForm(gateway.publicUrl, '/revoke', { token: next.refresh_token, client_id: clientId })).status, 200);
    assert.equal(await gateway.ctx.grants.validateAccessToken(next.access_token), undefined);
    const unknown = await postForm(gateway.publicUrl, '/revoke', { token: 'mcpgw_at_unknown', client_id: clientId });
    assert.equal(unknown.status, 200);
  });
});
