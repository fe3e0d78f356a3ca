import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { chromium, type Response } from 'playwright-core';
import { COOKIE } from '../../src/oauth/cookies.ts';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../support/chromium.ts';
import { type Harness, startHarness } from '../support/gateway-harness.ts';
import { authorizeUrl, pkce, registerClient } from '../support/oauth-steps.ts';

/**
 * A real browser on the consent page and the dev IdP's sign-in page: Debian's Chromium, driven by
 * playwright-core (never a downloaded browser). The client's redirect_uri is a loopback server
 * this test runs (RFC 8252 §7.3), which records what the browser brings back.
 */

const SCREENSHOT = new URL('../../test-output/consent.png', import.meta.url);

describe('browser: consent and dev sign-in in Chromium', () => {
  let gateway: Harness;
  let redirectServer: Server;
  let callback: string;
  /** Every request the client's redirect_uri received. */
  const received: URL[] = [];

  before(async () => {
    gateway = await startHarness();
    redirectServer = createServer((req, res) => {
      const url = new URL(req.url ?? '/', callback);
      // Chromium also asks the redirect host for /favicon.ico; only the callback counts.
      if (url.pathname === new URL(callback).pathname) received.push(url);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('signed in; you can close this window');
    });
    await new Promise<void>((resolve) => redirectServer.listen(0, '127.0.0.1', resolve));
    callback = `http://127.0.0.1:${(redirectServer.address() as AddressInfo).port}/callback`;
  });
  after(async () => {
    await new Promise<void>((resolve) => redirectServer?.close(() => resolve()));
    await gateway?.close();
  });

  it('shows the consent page, signs alice in, and the client gets a code it can redeem', { timeout: 60_000 }, async () => {
    const clientId = await registerClient(gateway.publicUrl, { client_name: 'Chromium Test Client', redirect_uris: [callback] });
    const { verifier, challenge } = pkce();
    const state = 'browser-state-7Qz';
    const start = authorizeUrl(gateway.publicUrl, {
      response_type: 'code',
      client_id: clientId,
      redirect_uri: callback,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state,
      resource: gateway.mcpUrl,
      scope: 'mcp:tools',
    });

    const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
    try {
      const context = await browser.newContext();
      const page = await context.newPage();
      // Set-Cookie headers the gateway sent (redirect responses included), by cookie name.
      const gatewaySetCookies = new Map<string, string>();
      const recording: Promise<void>[] = [];
      page.on('response', (response: Response) => {
        if (new URL(response.url()).origin !== gateway.publicUrl) return;
        recording.push(
          response.headerValues('set-cookie').then((values) => {
            for (const value of values.flatMap((v) => v.split('\n'))) {
              gatewaySetCookies.set(value.slice(0, value.indexOf('=')).trim(), value);
            }
          }),
        );
      });

      // 1. The consent page, before any upstream redirect.
      const consent = await page.goto(start.href);
      assert.ok(consent, 'navigation produced a response');
      assert.equal(consent.status(), 200);
      assert.equal(new URL(page.url()).pathname, '/authorize');
      assert.match(consent.headers()['content-security-policy'] ?? '', /(^|;)\s*frame-ancestors 'none'\s*(;|$)/);
      assert.equal((await page.locator('#client-name').textContent())?.trim(), 'Chromium Test Client');
      assert.equal((await page.locator('#redirect-host').textContent())?.trim(), new URL(callback).host);
      assert.deepEqual(await page.locator('#scopes li').allTextContents(), ['mcp:tools']);
      assert.equal(await page.getByRole('button', { name: 'Allow' }).count(), 1);
      assert.equal(await page.getByRole('button', { name: 'Deny' }).count(), 1);
      await mkdir(new URL('.', SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT.pathname, fullPage: true });

      // 2. Allow → the dev IdP's sign-in page.
      await Promise.all([page.waitForURL((url) => url.pathname.includes('/interaction/')), page.getByRole('button', { name: 'Allow' }).click()]);
      assert.equal(await page.title(), 'Sign in — dev IdP');
      await page.fill('input[name="login"]', 'alice');
      await page.fill('input[name="password"]', 'alice-password');

      // 3. Sign in → gateway /callback: alice has no stored approval, so she confirms by name.
      await Promise.all([page.waitForURL((url) => url.pathname === '/callback'), page.getByRole('button', { name: 'Sign in' }).click()]);
      assert.equal((await page.locator('#signed-in-as').textContent())?.trim(), 'Signed in as Alice Admin.');
      assert.equal(received.length, 0, 'no code before the signed-in user confirmed');

      // 4. Allow → the client's redirect_uri with code, state and iss.
      await Promise.all([page.waitForURL((url) => url.href.startsWith(callback)), page.getByRole('button', { name: 'Allow' }).click()]);
      await page.waitForLoadState('load');
      assert.equal(received.length, 1, `redirect server hits: ${received.map((u) => u.href).join(', ')}`);
      const returned = received[0]!;
      assert.equal(returned.pathname, '/callback');
      assert.equal(returned.searchParams.get('state'), state);
      assert.equal(returned.searchParams.get('iss'), gateway.publicUrl);
      assert.equal(returned.searchParams.get('error'), null);
      const code = returned.searchParams.get('code');
      assert.match(code ?? '', /^mcpgw_code_/);

      // 5. The code redeems at /token (PKCE verifier, same redirect_uri and resource).
      const token = await exchangeCodeFor(gateway.publicUrl, { code: code!, verifier, clientId, redirectUri: callback, resource: gateway.mcpUrl });
      assert.equal(token.status, 200);
      assert.equal(token.headers.get('cache-control'), 'no-store');
      const body = (await token.json()) as Record<string, unknown>;
      assert.equal(body['token_type'], 'Bearer');
      assert.match(String(body['access_token']), /^mcpgw_at_/);
      assert.match(String(body['refresh_token']), /^mcpgw_rt_/);
      assert.equal(body['scope'], 'mcp:tools');
      const record = await gateway.ctx.grants.validateAccessToken(String(body['access_token']));
      assert.equal(record?.user.name, 'Alice Admin');
      assert.equal(record?.resource, gateway.mcpUrl);

      // 6. Cookies: every one the gateway set is __Host-, Secure, HttpOnly, SameSite=Lax, Path=/,
      // and Chromium kept them on http://localhost (a secure context, so Secure cookies are allowed).
      await Promise.all(recording);
      // csrf (consent page), consent approval (Allow), account session (/callback).
      assert.deepEqual([...gatewaySetCookies.keys()].sort(), ['__Host-mcpgw-browser', '__Host-mcpgw-consent', '__Host-mcpgw-csrf', '__Host-mcpgw-session']);
      for (const [name, header] of gatewaySetCookies) {
        assert.match(name, /^__Host-/, header);
        assert.match(header, /;\s*Secure(;|$)/i, header);
        assert.match(header, /;\s*HttpOnly(;|$)/i, header);
        assert.match(header, /;\s*SameSite=Lax(;|$)/i, header);
        assert.match(header, /;\s*Path=\/(;|$)/i, header);
        assert.doesNotMatch(header, /;\s*Domain=/i, header);
      }
      const jar = (await context.cookies()).filter((c) => c.domain === new URL(gateway.publicUrl).hostname);
      for (const name of gatewaySetCookies.keys()) {
        const cookie = jar.find((c) => c.name === name);
        if (/Max-Age=0(;|$)/i.test(gatewaySetCookies.get(name)!)) continue; // a deletion leaves nothing to keep
        assert.ok(cookie, `Chromium kept ${name} (jar: ${jar.map((c) => c.name).join(', ')})`);
        assert.equal(cookie.secure, true, name);
        assert.equal(cookie.httpOnly, true, name);
        assert.equal(cookie.sameSite, 'Lax', name);
        assert.equal(cookie.path, '/', name);
      }
      // The consent approval (pre-sign-in step) and the account session both reached the jar.
      assert.ok(jar.some((c) => c.name === '__Host-mcpgw-consent'));
      assert.ok(jar.some((c) => c.name === '__Host-mcpgw-session'));
      for (const cookie of jar) assert.match(cookie.name, /^__Host-/, `only __Host- cookies on the gateway host: ${cookie.name}`);
    } finally {
      await browser.close();
    }
  });

  it('a consent given in the attacker\'s browser and planted in the victim\'s does not complete: the signed-in victim is asked by name, no code reaches the attacker', { timeout: 60_000 }, async () => {
    // The attacker's client: its redirect_uri records every hit; /lure, on another port of the
    // gateway's host (cookies are not isolated by port), plants the attacker's browser cookie.
    const attackerHits: URL[] = [];
    let lure = { cookie: '', idpUrl: '' };
    const attackerServer = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname === '/lure') {
        res.writeHead(302, {
          'set-cookie': `${COOKIE.browser}=${lure.cookie}; Path=/; Secure; HttpOnly; SameSite=Lax`,
          location: lure.idpUrl,
        });
        return res.end();
      }
      if (url.pathname === '/cb') attackerHits.push(url);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('attacker');
    });
    await new Promise<void>((resolve) => attackerServer.listen(0, '127.0.0.1', resolve));
    const attackerPort = (attackerServer.address() as AddressInfo).port;
    const evilClient = await registerClient(gateway.publicUrl, { client_name: 'Evil Client', redirect_uris: [`http://127.0.0.1:${attackerPort}/cb`] });

    const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
    try {
      // The victim, Bob, is signed in at the IdP (here through the gateway's /account page).
      const victim = await (await browser.newContext()).newPage();
      await victim.goto(`${gateway.publicUrl}/account`);
      await victim.fill('input[name="login"]', 'bob');
      await victim.fill('input[name="password"]', 'bob-password');
      await Promise.all([victim.waitForURL((url) => url.pathname === '/account'), victim.getByRole('button', { name: 'Sign in' }).click()]);

      // The attacker, signed in nowhere, allows his own client and keeps the IdP URL and his browser cookie.
      const attackerContext = await browser.newContext();
      const attacker = await attackerContext.newPage();
      attacker.on('request', (request) => {
        const url = new URL(request.url());
        if (!lure.idpUrl && url.origin === gateway.devIdp!.origin && url.pathname.endsWith('/auth')) lure.idpUrl = url.href;
      });
      const start = authorizeUrl(gateway.publicUrl, {
        response_type: 'code',
        client_id: evilClient,
        redirect_uri: `http://127.0.0.1:${attackerPort}/cb`,
        code_challenge: pkce().challenge,
        code_challenge_method: 'S256',
        state: 'attacker-state',
        resource: gateway.mcpUrl,
      });
      await attacker.goto(start.href);
      await Promise.all([attacker.waitForURL((url) => url.pathname.includes('/interaction/')), attacker.getByRole('button', { name: 'Allow' }).click()]);
      const planted = (await attackerContext.cookies(gateway.publicUrl)).find((c) => c.name === COOKIE.browser);
      assert.ok(planted && lure.idpUrl, 'the attacker holds a browser cookie and the IdP URL');
      lure = { cookie: planted.value, idpUrl: lure.idpUrl };

      // The victim opens the lure: the IdP completes silently, and the gateway asks Bob by name.
      const landed = await victim.goto(`http://localhost:${attackerPort}/lure`);
      assert.equal(new URL(victim.url()).pathname, '/callback');
      assert.equal(landed?.status(), 200);
      assert.equal((await victim.locator('#signed-in-as').textContent())?.trim(), 'Signed in as Bob Builder.');
      assert.equal((await victim.locator('#client-name').textContent())?.trim(), 'Evil Client');
      assert.equal((await victim.locator('#redirect-host').textContent())?.trim(), `127.0.0.1:${attackerPort}`);
      assert.deepEqual(attackerHits, [], 'no code reached the attacker');
    } finally {
      await browser.close();
      await new Promise<void>((resolve) => attackerServer.close(() => resolve()));
    }
  });
});

/** oauth-steps' exchangeCode, but with this test's own redirect_uri (that one is fixed to CLIENT_REDIRECT). */
function exchangeCodeFor(baseUrl: string, f: { code: string; verifier: string; clientId: string; redirectUri: string; resource: string }) {
  return fetch(`${baseUrl}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: f.code,
      code_verifier: f.verifier,
      client_id: f.clientId,
      redirect_uri: f.redirectUri,
      resource: f.resource,
    }),
  });
}
