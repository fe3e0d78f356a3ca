import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, type FetchLike, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';
import { type Browser, chromium, type Page } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../support/chromium.ts';
import { type HeadlessUser, HeadlessV2OAuthProvider } from '../support/sdk-oauth.ts';
import { startSnippetsBehindGateway } from '../support/snippets-gateway.ts';

/**
 * Step-up end to end (MCP 2025-11-25 authorization §Scope Challenge Handling): the v2 SDK client
 * calls a tool the policy allows only with `snippets:write`; the gateway answers 403
 * insufficient_scope; the client's own step-up re-authorizes with the challenged scope; Chromium
 * shows the consent page with the added scope, the user allows it, the app finishes the
 * authorization as any app does (`finishAuth`), and the retried call succeeds.
 *
 * The v2 client (`@modelcontextprotocol/client` 2.4): v1 1.32 answers the same challenge by
 * refreshing its token (a refresh cannot widen scope, RFC 6749 §6) and then gives up with "Server
 * returned 403 after trying upscoping" (typescript-sdk#2255), so it never reaches the consent page.
 */

const SCREENSHOT = new URL('../../test-output/step-up-consent.png', import.meta.url);
const ALICE: HeadlessUser = { login: 'alice', password: 'alice-password' };
const RULES = [
  { name: 'readers', tools: ['hello_mcp', 'get_snippet', 'list_snippets'] },
  { name: 'admins-write', tools: ['save_snippet', 'delete_snippet'], roles: ['admin'] },
  { name: 'no-deletes', effect: 'deny', tools: ['delete_snippet'] },
  { name: 'write-scope', effect: 'step-up', tools: ['save_snippet', 'delete_snippet'], scopes: ['snippets:write'] },
];

interface ConsentSeen {
  scopes: string[];
  added: string | null;
  signedInAs: string | null;
}

/**
 * The SDK's OAuthClientProvider with the pages in Chromium: redirectToAuthorization opens the
 * authorization URL, allows every consent page (recording what it showed), signs in at the dev
 * IdP when asked, and keeps where the browser was sent back to, as an app's redirect handler does.
 */
class ChromiumOAuthProvider extends HeadlessV2OAuthProvider {
  consents: ConsentSeen[] = [];
  private readonly page: Page;
  private readonly account: HeadlessUser;

  constructor(page: Page, user: HeadlessUser, redirectUrl: string) {
    super(user, { redirectUrl });
    this.page = page;
    this.account = user;
  }

  override async redirectToAuthorization(authorizationUrl: URL): Promise<void> {
    const page = this.page;
    await page.goto(authorizationUrl.href);
    for (let step = 0; step < 6 && !page.url().startsWith(this.redirectUrl); step++) {
      const current = page.url();
      const moved = () => page.waitForURL((url) => url.href !== current);
      if ((await page.locator('form[action="/consent"]').count()) > 0) {
        this.consents.push({
          scopes: (await page.locator('#scopes li').allTextContents()).map((s) => s.trim()),
          added: (await page.locator('#added-scopes').count()) > 0 ? (await page.locator('#added-scopes').textContent())!.trim() : null,
          signedInAs: (await page.locator('#signed-in-as').count()) > 0 ? (await page.locator('#signed-in-as').textContent())!.trim() : null,
        });
        if (this.consents.at(-1)!.added !== null) {
          await mkdir(new URL('.', SCREENSHOT), { recursive: true });
          await page.screenshot({ path: SCREENSHOT.pathname, fullPage: true });
        }
        await Promise.all([moved(), page.getByRole('button', { name: 'Allow' }).click()]);
      } else if ((await page.locator('input[name="password"]').count()) > 0) {
        await page.fill('input[name="login"]', this.account.login);
        await page.fill('input[name="password"]', this.account.password);
        await Promise.all([moved(), page.getByRole('button', { name: 'Sign in' }).click()]);
      } else {
        throw new Error(`sign-in stuck at ${page.url()}: ${(await page.content()).slice(0, 300)}`);
      }
    }
    if (!page.url().startsWith(this.redirectUrl)) throw new Error(`sign-in did not return to the client (at ${page.url()})`);
    this.redirectedTo = new URL(page.url());
    this.authorizationCode = this.redirectedTo.searchParams.get('code') ?? undefined;
  }
}

describe('browser: step-up with the SDK client and the consent page in Chromium', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mcpgw-step-up-'));
  let system: Awaited<ReturnType<typeof startSnippetsBehindGateway>>;
  let redirectServer: Server;
  let callback: string;
  let browser: Browser;

  before(async () => {
    system = await startSnippetsBehindGateway(dataDir, { scopes: ['mcp:tools', 'snippets:write'], policy: { rules: RULES } });
    redirectServer = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('signed in; you can close this window'));
    await new Promise<void>((resolve) => redirectServer.listen(0, '127.0.0.1', resolve));
    callback = `http://127.0.0.1:${(redirectServer.address() as AddressInfo).port}/callback`;
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => redirectServer?.close(() => resolve()));
    await system?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('403 insufficient_scope → the client re-authorizes → consent shows the added scope → the retried call succeeds', { timeout: 90_000 }, async () => {
    const gateway = system.gateway;
    const provider = new ChromiumOAuthProvider(await (await browser.newContext()).newPage(), ALICE, callback);
    // Instrumentation only: the challenges the gateway sent, as the client received them.
    const challenges: (string | null)[] = [];
    const recording: FetchLike = async (url, init) => {
      const response = await fetch(url, init);
      if (response.status === 403) challenges.push(response.headers.get('www-authenticate'));
      return response;
    };
    const transportOf = () => new StreamableHTTPClientTransport(new URL(gateway.mcpUrl), { authProvider: provider, fetch: recording });

    // 1. Sign-in: the 401's scope is the basic set (the step-up scope is offered in PRM, not asked for).
    const prm = (await (await fetch(`${gateway.publicUrl}/.well-known/oauth-protected-resource/mcp`)).json()) as { scopes_supported: string[] };
    assert.deepEqual(prm.scopes_supported, ['mcp:tools', 'snippets:write']);
    const first = transportOf();
    await assert.rejects(new Client({ name: 'step-up', version: '1.0.0' }).connect(first), UnauthorizedError);
    assert.deepEqual(provider.consents, [
      { scopes: ['mcp:tools'], added: null, signedInAs: null },
      { scopes: ['mcp:tools'], added: null, signedInAs: 'Signed in as Alice Admin.' },
    ]);
    await first.finishAuth(provider.redirectedTo!.searchParams);
    assert.equal(provider.tokens()?.scope, 'mcp:tools');

    const transport = transportOf();
    const client = new Client({ name: 'step-up', version: '1.0.0' });
    await client.connect(transport);
    try {
      // 2. The write tool is listed (a step-up would allow it); the denied one is not, and calling
      // it is "not found", never a scope challenge.
      assert.deepEqual((await client.listTools()).tools.map((t) => t.name).sort(), ['get_snippet', 'hello_mcp', 'list_snippets', 'save_snippet']);
      const hidden = await client.callTool({ name: 'delete_snippet', arguments: { snippetname: 'x' } }).then(
        (result) => result,
        (error: Error) => error,
      );
      assert.match(hidden instanceof Error ? hidden.message : JSON.stringify(hidden), /Tool delete_snippet not found/);
      assert.deepEqual(challenges, []);

      // 3. save_snippet: 403 → the SDK's step-up → Chromium shows the added scope → Allow.
      provider.consents = [];
      const save = { name: 'save_snippet', arguments: { snippetname: 'stepped', snippet: 'after step-up' } };
      await assert.rejects(client.callTool(save), UnauthorizedError);
      assert.deepEqual(challenges, [
        `Bearer error="insufficient_scope", scope="mcp:tools snippets:write", resource_metadata="${gateway.publicUrl}/.well-known/oauth-protected-resource/mcp"`,
      ]);
      assert.deepEqual(provider.consents, [
        { scopes: ['mcp:tools', 'snippets:write'], added: null, signedInAs: null },
        {
          scopes: ['mcp:tools', 'snippets:write new'],
          added: 'It asks for more than you allowed it before: snippets:write.',
          signedInAs: 'Signed in as Alice Admin.',
        },
      ]);
      await transport.finishAuth(provider.redirectedTo!.searchParams);
      assert.equal(provider.tokens()?.scope, 'mcp:tools snippets:write');

      // 4. The retried call succeeds with the new token.
      const saved = await client.callTool(save);
      assert.equal(saved.isError, undefined, JSON.stringify(saved));
      const got = await client.callTool({ name: 'get_snippet', arguments: { snippetname: 'stepped' } });
      assert.equal((got.content as { text: string }[])[0]?.text, 'after step-up');
      assert.equal(challenges.length, 1);
    } finally {
      await client.close();
    }
  });
});
