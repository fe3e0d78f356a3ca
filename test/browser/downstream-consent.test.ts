import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { McpError } from '@modelcontextprotocol/sdk/types.js';
import { type Browser, chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../support/chromium.ts';
import type { DownstreamBackend } from '../support/downstream-backend.ts';
import { type EntraDownstream, startEntraDownstream } from '../support/entra-gateway.ts';
import { type EntraShapedIdp, SNIPPETS_API_SCOPE } from '../support/entra-shaped-idp.ts';
import type { Harness } from '../support/gateway-harness.ts';
import { connectSignedIn } from '../support/scale-cluster.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

const ADELE = { login: 'adele@contoso.test', password: 'correct horse' };

/**
 * The downstream consent link in a real browser: the MCP client (SDK 1.32, URL-mode elicitation
 * declared) gets -32042 for a tool whose backend needs a scope Entra has no consent for; Chromium
 * opens the elicitation's URL as the client would after asking the user, signs in at the Entra
 * look-alike (which takes the interactive request as the consent), and lands on the gateway's
 * "Done" page; the client's retry is served.
 */
describe('downstream consent link followed in Chromium', () => {
  let idp: EntraShapedIdp;
  let backend: DownstreamBackend;
  let gw: Harness;
  let client: Client;
  let browser: Browser;
  let chain: EntraDownstream;

  before(async () => {
    chain = await startEntraDownstream({
      gateway: ({ backend }) => ({
        backends: [{ name: 'graph-tools', path: '/mcp', url: backend.mcpUrl, downstreamTokens: [{ scopes: [SNIPPETS_API_SCOPE], header: 'x-snippets-token', tools: ['echo_plain'] }] }],
      }),
    });
    ({ idp, backend, gw } = chain);
    const provider = new HeadlessOAuthProvider(ADELE);
    await connectSignedIn(gw.mcpUrl, provider).then((c) => c.close());
    client = new Client({ name: 'eliciting', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
    await client.connect(new StreamableHTTPClientTransport(new URL(gw.mcpUrl), { authProvider: provider }));
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await client?.close();
    await chain?.close();
  });

  it('the user opens the link, signs in and consents upstream, sees "Done"; the retried call is served', async () => {
    idp.withholdConsent(SNIPPETS_API_SCOPE, 'consent_required');
    const error = await client.callTool({ name: 'echo_plain', arguments: {} }).then(
      () => assert.fail('the call should need consent'),
      (e: unknown) => e as McpError,
    );
    assert.equal(error.code, -32042);
    const [elicitation] = (error.data as { elicitations: { url: string }[] }).elicitations;
    const page = await (await browser.newContext()).newPage();
    await page.goto(elicitation!.url);
    await page.waitForSelector('input[name="password"]');
    assert.match(page.url(), /\/oauth2\/v2\.0\/authorize|\/interaction\//);
    await page.fill('input[name="login"]', ADELE.login);
    await page.fill('input[name="password"]', ADELE.password);
    await Promise.all([page.waitForSelector('#done'), page.getByRole('button', { name: 'Sign in' }).click()]);
    assert.equal(new URL(page.url()).pathname, '/callback');
    assert.match(await page.locator('body').textContent() ?? '', /Access to api:\/\/3f0e5c2a-snippets\/Snippets\.Read is now granted/);
    const result = await client.callTool({ name: 'echo_plain', arguments: {} });
    assert.deepEqual(result.content, [{ type: 'text', text: 'plain' }]);
    assert.match(String(backend.requests.at(-1)!['x-snippets-token']), /^Bearer ey/);
  });
});
