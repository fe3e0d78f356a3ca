import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import * as client from 'openid-client';
import type { DevIdpConfig } from '../../src/config/schema.ts';
import { type DevIdp, startDevIdp } from '../../src/idp/dev-idp.ts';
import { createUpstreamIdp } from '../../src/idp/index.ts';
import { sha256 } from '../../src/oauth/secrets.ts';
import { createOidcIdp } from '../../src/idp/oidc.ts';
import { type UpstreamIdp, UpstreamRefusedError, UpstreamUnavailableError } from '../../src/ports/idp.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { createHeadlessBrowser, signInAtDevIdp } from '../support/headless-browser.ts';
import { freePort } from '../support/ports.ts';

const REDIRECT_URI = 'http://127.0.0.1:9/callback';
const TENANT = '00000000-0000-4000-8000-000000000001';
const CLIENT = { clientId: 'mcp-entra-gateway', clientSecret: 'dev-secret-0123456789', redirectUris: [REDIRECT_URI] };

const config: DevIdpConfig = {
  host: '127.0.0.1',
  port: 0,
  tenantId: TENANT,
  allowInProduction: false,
  users: [
    {
      login: 'alice',
      password: 'alice-pw',
      name: 'Alice Example',
      email: 'alice@example.test',
      oid: '11111111-2222-4333-8444-555555555555',
      roles: ['Snippets.Read', 'Snippets.Write'],
      groups: ['admins'],
    },
    { login: 'bob', password: 'bob-pw', name: 'Bob Example', roles: [], groups: [] },
  ],
};

const toCallback = (location: URL) => location.href.startsWith(REDIRECT_URI);

function newRequest() {
  return { state: client.randomState(), nonce: client.randomNonce(), codeVerifier: client.randomPKCECodeVerifier() };
}

describe('dev IdP through the oidc adapter', () => {
  let devIdp: DevIdp;
  let idp: UpstreamIdp;

  before(async () => {
    devIdp = await startDevIdp(config, CLIENT, { env: {} });
    idp = await createUpstreamIdp({ dev: config }, { redirectUri: REDIRECT_URI, devIdp: { issuer: devIdp.issuer, ...CLIENT } });
  });
  after(() => devIdp.close());

  test('serves Entra-shaped discovery under /{tenant}/v2.0', async () => {
    assert.match(devIdp.issuer, new RegExp(`^http://127\\.0\\.0\\.1:\\d+/${TENANT}/v2\\.0$`));
    const metadata = (await (await fetch(`${devIdp.issuer}/.well-known/openid-configuration`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(metadata['issuer'], devIdp.issuer);
    assert.equal(metadata['authorization_endpoint'], `${devIdp.issuer}/auth`);
    assert.deepEqual(metadata['code_challenge_methods_supported'], ['S256']);
    await idp.ping();
  });

  test('signs in: bad password shows an error, a good one returns a code; identity from the id_token', async () => {
    const browser = createHeadlessBrowser();
    const request = newRequest();
    const signInPage = await browser.get(await idp.authorizationUrl(request));
    assert.equal(signInPage.status, 200);
    assert.match(signInPage.body, /name="login"/);
    assert.match(signInPage.body, /name="password"/);

    const refused = await signInAtDevIdp(browser, signInPage, 'alice<script>', 'nope');
    assert.equal(refused.status, 200);
    assert.match(refused.body, /Wrong login or password\./);
    assert.match(refused.body, /value="alice&lt;script&gt;"/);
    assert.doesNotMatch(refused.body, /<script>/);

    const done = await signInAtDevIdp(browser, refused, 'alice', 'alice-pw', { stopAt: toCallback });
    assert.ok(done.stoppedAt, `expected a redirect to the callback, got ${done.status} at ${done.url}`);
    assert.equal(done.stoppedAt.searchParams.get('state'), request.state);
    assert.ok(done.stoppedAt.searchParams.get('code'));
    assert.equal(done.stoppedAt.searchParams.get('iss'), devIdp.issuer); // RFC 9207

    const { identity, tokens } = await idp.completeSignIn({ callbackUrl: done.stoppedAt, ...request });
    assert.equal(idp.kind, 'dev');
    assert.equal(identity.issuer, devIdp.issuer);
    assert.equal(identity.objectId, '11111111-2222-4333-8444-555555555555');
    assert.equal(identity.tenantId, TENANT);
    assert.equal(identity.name, 'Alice Example');
    assert.equal(identity.email, 'alice@example.test');
    assert.equal(identity.preferredUsername, 'alice');
    assert.deepEqual(identity.roles, ['Snippets.Read', 'Snippets.Write']);
    assert.deepEqual(identity.groups, ['admins']);
    assert.notEqual(identity.subject, identity.objectId);
    assert.ok(tokens.accessToken && tokens.refreshToken && tokens.idToken);
    assert.ok(tokens.expiresAt && tokens.expiresAt > Date.now() / 1000);
    assert.deepEqual(tokens.scope?.split(' ').sort(), ['email', 'offline_access', 'openid', 'profile']);
  });

  test('a user without a configured oid gets a stable uuid; sub is stable', async () => {
    const first = await signIn(idp, 'bob', 'bob-pw');
    const second = await signIn(idp, 'bob', 'bob-pw');
    assert.match(first.identity.objectId ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(second.identity.objectId, first.identity.objectId);
    assert.equal(second.identity.subject, first.identity.subject);
    assert.deepEqual(first.identity.roles, []);
    assert.equal(first.identity.email, undefined);
  });

  test('refresh works, replays the stored scopes, and rotates the refresh token', async () => {
    const { tokens } = await signIn(idp, 'alice', 'alice-pw');
    const { tokens: refreshed } = await idp.refresh(tokens);
    assert.ok(refreshed.accessToken);
    assert.notEqual(refreshed.accessToken, tokens.accessToken);
    assert.ok(refreshed.refreshToken);
    assert.notEqual(refreshed.refreshToken, tokens.refreshToken);
    assert.equal(refreshed.scope, tokens.scope);

    // A narrower stored scope is what gets asked for: the IdP answers with exactly that.
    const { tokens: narrowed } = await idp.refresh({ ...refreshed, scope: 'openid offline_access' });
    assert.deepEqual(narrowed.scope?.split(' ').sort(), ['offline_access', 'openid']);
  });

  test('prompt=login shows the sign-in page again and still yields a refresh token', async () => {
    const browser = createHeadlessBrowser();
    await signIn(idp, 'alice', 'alice-pw', browser);
    const request = newRequest();
    const page = await browser.get(await idp.authorizationUrl({ ...request, prompt: 'login' }), { stopAt: toCallback });
    assert.equal(page.stoppedAt, undefined, 'an existing session must not skip the sign-in page');
    const done = await signInAtDevIdp(browser, page, 'alice', 'alice-pw', { stopAt: toCallback });
    assert.ok(done.stoppedAt);
    const { tokens } = await idp.completeSignIn({ callbackUrl: done.stoppedAt, ...request });
    assert.ok(tokens.refreshToken);
  });

  test('a user disabled at the IdP loses access at the next refresh', async () => {
    const { tokens } = await signIn(idp, 'bob', 'bob-pw');
    await idp.refresh(tokens).then((t) => Object.assign(tokens, t));
    devIdp.disableUser('bob');
    await assert.rejects(idp.refresh(tokens), (error: unknown) => {
      assert.ok(error instanceof UpstreamRefusedError);
      assert.equal(error.upstreamError, 'invalid_grant');
      return true;
    });
  });

  const tampered: [string, () => Record<string, string>][] = [
    ['a wrong nonce is refused', () => ({ nonce: client.randomNonce() })],
    ['a wrong state is refused', () => ({ state: client.randomState() })],
  ];
  for (const [name, override] of tampered) {
    test(name, async () => {
      const browser = createHeadlessBrowser();
      const request = newRequest();
      const page = await browser.get(await idp.authorizationUrl(request));
      const done = await signInAtDevIdp(browser, page, 'alice', 'alice-pw', { stopAt: toCallback });
      assert.ok(done.stoppedAt);
      await assert.rejects(idp.completeSignIn({ callbackUrl: done.stoppedAt, ...request, ...override() }), UpstreamRefusedError);
    });
  }
});

describe('dev IdP state in the Store', () => {
  test('a sign-in leaves no session cookie, interaction id, code or token in any Store key or value, nor in the SQLite files', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-devidp-'));
    const path = join(dir, 'store.db');
    const store = SqliteStore.open({ path, clock: { nowSeconds: () => Math.floor(Date.now() / 1000) } });
    const devIdp = await startDevIdp(config, CLIENT, { env: {}, store });
    t.after(async () => {
      await devIdp.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const idp = await createUpstreamIdp({ dev: config }, { redirectUri: REDIRECT_URI, devIdp: { issuer: devIdp.issuer, ...CLIENT } });
    const browser = createHeadlessBrowser();
    const secrets = new Set<string>();
    const keepCookies = (url: string) => {
      for (const pair of browser.cookieHeader(url).split('; ').filter(Boolean)) secrets.add(pair.slice(pair.indexOf('=') + 1));
    };

    const request = newRequest();
    const signInPage = await browser.get(await idp.authorizationUrl(request));
    const interactionId = /\/interaction\/([\w-]+)$/.exec(new URL(signInPage.url).pathname)![1]!;
    secrets.add(interactionId);
    keepCookies(signInPage.url);
    keepCookies(`${devIdp.issuer}/auth/${interactionId}`);
    const done = await signInAtDevIdp(browser, signInPage, 'alice', 'alice-pw', { stopAt: toCallback });
    assert.ok(done.stoppedAt);
    keepCookies(`${devIdp.issuer}/auth`);
    secrets.add(done.stoppedAt.searchParams.get('code')!);
    const { tokens } = await idp.completeSignIn({ callbackUrl: done.stoppedAt, ...request });
    // Lookups by id still work: refresh twice (rotation), and the session cookie signs in again.
    const { tokens: refreshed } = await idp.refresh(tokens);
    const { tokens: refreshedAgain } = await idp.refresh(refreshed);
    for (const token of [tokens, refreshed, refreshedAgain]) {
      secrets.add(token.accessToken!);
      secrets.add(token.refreshToken!);
    }
    const again = newRequest();
    const silent = await browser.get(await idp.authorizationUrl(again), { stopAt: toCallback });
    assert.ok(silent.stoppedAt, 'the stored session is found by its cookie: no sign-in page');
    secrets.add(silent.stoppedAt.searchParams.get('code')!);
    // prompt=login with a session: the interaction finds the session by its uid.
    const relogin = newRequest();
    const loginAgain = await browser.get(await idp.authorizationUrl({ ...relogin, prompt: 'login' }), { stopAt: toCallback });
    const reloginDone = await signInAtDevIdp(browser, loginAgain, 'alice', 'alice-pw', { stopAt: toCallback });
    assert.ok(reloginDone.stoppedAt, `${reloginDone.status} ${reloginDone.body.slice(0, 200)}`);
    keepCookies(`${devIdp.issuer}/auth`);
    secrets.add(reloginDone.stoppedAt.searchParams.get('code')!);
    // A rotated refresh token presented again revokes its grant: its tokens, found through the grant's set, are deleted.
    const newestAccessToken = `devidp:AccessToken:${sha256(refreshedAgain.accessToken!)}`;
    assert.ok(await store.get(newestAccessToken), 'an access token is kept under the SHA-256 of its value');
    await assert.rejects(idp.refresh(tokens), UpstreamRefusedError);
    assert.equal(await store.get(newestAccessToken), undefined);
    await assert.rejects(idp.refresh(refreshedAgain), UpstreamRefusedError);
    assert.ok(secrets.size >= 10, `collected ${[...secrets].length} secrets`);

    const inspector = new DatabaseSync(path, { readOnly: true });
    const rows = [
      ...inspector.prepare('SELECT key, value FROM kv').all(),
      ...inspector.prepare('SELECT key, member AS value FROM set_members').all(),
    ].map((row) => `${String(row.key)} ${String(row.value)}`);
    inspector.close();
    assert.ok(rows.some((row) => row.startsWith('devidp:Session:')), 'the dev IdP keeps its sessions in the Store');
    const files = [path, `${path}-wal`, `${path}-shm`].map((file) => readFileSync(file).toString('latin1'));
    for (const secret of secrets) {
      assert.ok(!rows.some((row) => row.includes(secret)), `a Store row contains ${secret}`);
      assert.ok(!files.some((bytes) => bytes.includes(secret)), `a SQLite file contains ${secret}`);
    }
  });
});

describe('dev IdP start rules', () => {
  test('refuses NODE_ENV=production unless allowed', async () => {
    await assert.rejects(startDevIdp(config, CLIENT, { env: { NODE_ENV: 'production' } }), /NODE_ENV=production/);
    const allowed = await startDevIdp({ ...config, allowInProduction: true }, CLIENT, { env: { NODE_ENV: 'production' } });
    await allowed.close();
  });

  test('a down IdP does not stop the adapter from being created; discovery is retried', async () => {
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}/${TENANT}/v2.0`;
    const idp = await createOidcIdp(
      { issuer, ...CLIENT, scopes: ['openid', 'offline_access'], rolesClaim: 'roles', groupsClaim: 'groups' },
      { redirectUri: REDIRECT_URI, kind: 'dev', allowInsecureHttp: true },
    );
    await assert.rejects(idp.ping(), UpstreamUnavailableError);
    await assert.rejects(idp.authorizationUrl(newRequest()), UpstreamUnavailableError);

    const late = await startDevIdp({ ...config, port }, CLIENT, { env: {} });
    try {
      const url = await idp.authorizationUrl(newRequest());
      assert.equal(url.origin, `http://127.0.0.1:${port}`);
      await idp.ping();
    } finally {
      await late.close();
    }
  });

  test('http issuers are refused unless on loopback and allowed', async () => {
    const base = { ...CLIENT, scopes: ['openid'], rolesClaim: 'roles', groupsClaim: 'groups' };
    await assert.rejects(
      createOidcIdp({ ...base, issuer: 'http://127.0.0.1:1/x' }, { redirectUri: REDIRECT_URI }),
      /must be https/,
    );
    await assert.rejects(
      createOidcIdp({ ...base, issuer: 'http://idp.example/x' }, { redirectUri: REDIRECT_URI, allowInsecureHttp: true }),
      /must be https/,
    );
  });
});

async function signIn(idp: UpstreamIdp, login: string, password: string, browser = createHeadlessBrowser()) {
  const request = newRequest();
  let page = await browser.get(await idp.authorizationUrl(request), { stopAt: toCallback });
  if (!page.stoppedAt) page = await signInAtDevIdp(browser, page, login, password, { stopAt: toCallback });
  assert.ok(page.stoppedAt, `sign-in of ${login} did not reach the callback: ${page.status} ${page.body.slice(0, 200)}`);
  return idp.completeSignIn({ callbackUrl: page.stoppedAt, ...request });
}
