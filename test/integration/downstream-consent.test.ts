import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client as V2Client, StreamableHTTPClientTransport as V2StreamableHTTPClientTransport, UnauthorizedError as V2UnauthorizedError } from '@modelcontextprotocol/client';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { keys } from '../../src/oauth/keys.ts';
import type { DownstreamBackend } from '../support/downstream-backend.ts';
import { type EntraDownstream, entraUpstream, startEntraDownstream, startGatewayAppIdp } from '../support/entra-gateway.ts';
import { ENTRA_TEST_TENANT, ENTRA_TEST_USERS, type EntraShapedIdp, MFA_CLAIMS_CHALLENGE, SNIPPETS_API_SCOPE } from '../support/entra-shaped-idp.ts';
import type { Harness } from '../support/gateway-harness.ts';
import { createHeadlessBrowser, type HeadlessBrowser, signInAtDevIdp } from '../support/headless-browser.ts';
import { freePort } from '../support/ports.ts';
import { connectSignedIn } from '../support/scale-cluster.ts';
import { HeadlessOAuthProvider, HeadlessV2OAuthProvider } from '../support/sdk-oauth.ts';
import { startSnippetsBehindGateway } from '../support/snippets-gateway.ts';

const ADELE = { login: 'adele@contoso.test', password: 'correct horse' };
const BOB = { login: 'bob@contoso.test', password: 'battery staple' };
const URL_ELICITATION_REQUIRED = -32042;
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const MODERN = '2026-07-28';
const ADELE_KEY = `${ENTRA_TEST_TENANT}|${ENTRA_TEST_USERS[0]!.oid}`;

interface UrlElicitation {
  mode: string;
  elicitationId: string;
  url: string;
  message: string;
}

/** Follows a consent link in `browser` until the gateway's last page, signing in at the look-alike when asked. */
async function followConsentLink(browser: HeadlessBrowser, link: string, user: { login: string; password: string }) {
  let page = await browser.get(link);
  for (let step = 0; step < 3 && page.body.includes('name="password"'); step++) page = await signInAtDevIdp(browser, page, user.login, user.password);
  return page;
}

describe('downstream consent link: consent_required from Entra becomes a link the user follows, then the call succeeds', () => {
  let idp: EntraShapedIdp;
  let backend: DownstreamBackend;
  let gw: Harness;
  let provider: HeadlessOAuthProvider;
  let plain: Client;
  let eliciting: Client;
  let chain: EntraDownstream;

  before(async () => {
    chain = await startEntraDownstream({
      idp: {
        users: [
          ...ENTRA_TEST_USERS,
          { login: BOB.login, password: BOB.password, name: 'Bob Kelly', email: BOB.login, oid: '0b0b0b0b-1c1c-4d2d-8e3e-4f4f5a5a6b6b', roles: [], groups: [] },
        ],
      },
      pull: { clientId: 'tools-backend', secret: 'backend-secret', scope: SNIPPETS_API_SCOPE },
      gateway: ({ backend }) => ({
        config: { clients: [{ clientId: 'tools-backend', secret: 'backend-secret', grantTypes: [TOKEN_EXCHANGE] }] },
        backends: [
          {
            name: 'graph-tools',
            path: '/mcp',
            url: backend.mcpUrl,
            tokenExchange: { clientIds: ['tools-backend'] },
            downstreamTokens: [{ scopes: [SNIPPETS_API_SCOPE], header: 'x-snippets-token', tools: ['echo_plain'] }],
          },
        ],
      }),
    });
    ({ idp, backend, gw } = chain);
    provider = new HeadlessOAuthProvider(ADELE);
    // A client that declares no URL-mode elicitation, and one that does (MCP 2025-11-25 initialize).
    // Two sign-ins, so two grants: what a client declared is kept per grant (one client, one user).
    plain = await connectSignedIn(gw.mcpUrl, new HeadlessOAuthProvider(ADELE));
    await connectSignedIn(gw.mcpUrl, provider).then((c) => c.close());
    eliciting = new Client({ name: 'eliciting', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
    await eliciting.connect(new StreamableHTTPClientTransport(new URL(gw.mcpUrl), { authProvider: provider }));
  });
  after(async () => {
    await plain?.close();
    await eliciting?.close();
    await chain?.close();
  });

  const publicUrl = () => new URL(gw.mcpUrl).origin;

  /** The -32042 error a tools/call of echo_plain gets now (2025-11-25, URL-mode elicitation declared). */
  async function elicitation(): Promise<{ error: McpError; elicitation: UrlElicitation }> {
    const error = await eliciting.callTool({ name: 'echo_plain', arguments: {} }).then(
      () => assert.fail('the call should need consent'),
      (e: unknown) => e as McpError,
    );
    assert.ok(error instanceof McpError, String(error));
    assert.equal(error.code, URL_ELICITATION_REQUIRED);
    const data = error.data as { elicitations: UrlElicitation[] };
    assert.equal(data.elicitations.length, 1);
    return { error, elicitation: data.elicitations[0]! };
  }

  it('a client without URL-mode elicitation gets a plain error that names the scope and the link', async () => {
    idp.withholdConsent(SNIPPETS_API_SCOPE, 'consent_required');
    await assert.rejects(plain.callTool({ name: 'echo_plain', arguments: {} }), (error: McpError) => {
      assert.equal(error.code, -32000);
      assert.match(error.message, /needs a token for api:\/\/3f0e5c2a-snippets\/Snippets\.Read: .*\(consent_required\); open http:\/\/localhost:\d+\/consent\/downstream\?request=\S+ to do it$/);
      return true;
    });
  });

  it('a client that declared elicitation.url gets URLElicitationRequiredError (-32042) with one URL elicitation', async () => {
    const { error, elicitation: e } = await elicitation();
    assert.deepEqual(Object.keys(e).sort(), ['elicitationId', 'message', 'mode', 'url']);
    assert.equal(e.mode, 'url');
    assert.match(e.elicitationId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(e.message, `Backend graph-tools needs your consent to ${SNIPPETS_API_SCOPE}. Open the link to give it, then try again.`);
    const url = new URL(e.url);
    assert.equal(url.origin + url.pathname, `${publicUrl()}/consent/downstream`);
    assert.deepEqual([...url.searchParams.keys()], ['request']);
    // §Safe URL Handling: nothing about the user in the URL (no login, no name, no token).
    for (const secret of [ADELE.login, 'Adele', provider.tokens()!.access_token]) assert.ok(!e.url.includes(secret));
    assert.match(error.message, /Forbidden: backend graph-tools needs a token for api:\/\/3f0e5c2a-snippets\/Snippets\.Read/);
  });

  it('the exact wire answer: HTTP 200, the JSON-RPC error with data.elicitations, the request id', async () => {
    const response = await fetch(gw.mcpUrl, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${provider.tokens()!.access_token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2025-11-25',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 'call-7', method: 'tools/call', params: { name: 'echo_plain', arguments: {} } }),
    });
    assert.equal(response.status, 200);
    const body = (await response.json()) as { jsonrpc: string; id: string; error: { code: number; message: string; data: { elicitations: UrlElicitation[] } } };
    assert.deepEqual(Object.keys(body).sort(), ['error', 'id', 'jsonrpc']);
    assert.equal(body.id, 'call-7');
    assert.equal(body.error.code, URL_ELICITATION_REQUIRED);
    assert.equal(body.error.data.elicitations[0]!.mode, 'url');
  });

  it('a 2026-07-28 request declaring elicitation.url in _meta gets an InputRequiredResult with the URL elicitation', async () => {
    const response = await fetch(gw.mcpUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${provider.tokens()!.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 3,
        method: 'tools/call',
        params: { name: 'echo_plain', arguments: {}, _meta: { 'io.modelcontextprotocol/clientCapabilities': { elicitation: { url: {} } } } },
      }),
    });
    assert.equal(response.status, 200);
    const body = (await response.json()) as { id: number; result: { resultType: string; inputRequests: Record<string, { method: string; params: Record<string, string> }> } };
    assert.equal(body.id, 3);
    assert.equal(body.result.resultType, 'input_required');
    const requests = Object.values(body.result.inputRequests);
    assert.equal(requests.length, 1);
    assert.equal(requests[0]!.method, 'elicitation/create');
    // 2026-07-28 client/elicitation: mode, url, message; no elicitationId.
    assert.deepEqual(Object.keys(requests[0]!.params).sort(), ['message', 'mode', 'url']);
    assert.match(requests[0]!.params['url']!, /\/consent\/downstream\?request=/);
  });

  it('the link page sends the browser to the upstream authorize endpoint with the missing scope, for that user, without prompt=consent', async () => {
    const { elicitation: e } = await elicitation();
    const browser = createHeadlessBrowser();
    const location = await browser.followUntil(e.url, (l) => l.pathname.endsWith('/oauth2/v2.0/authorize'));
    const scopes = location.searchParams.get('scope')!.split(' ');
    assert.deepEqual(scopes, ['openid', 'profile', 'email', 'offline_access', SNIPPETS_API_SCOPE]);
    assert.equal(location.searchParams.get('login_hint'), ADELE.login);
    assert.equal(location.searchParams.get('prompt'), null);
    assert.equal(location.searchParams.get('claims'), null, 'consent_required carries no claims challenge');
    assert.equal(location.searchParams.get('redirect_uri'), `${publicUrl()}/callback`);
  });

  it('another user who opens the link is refused and nothing changes on the grant', async () => {
    const { elicitation: e } = await elicitation();
    const page = await followConsentLink(createHeadlessBrowser(), e.url, BOB);
    assert.equal(page.status, 403);
    assert.match(page.body, /signed in as another user than the one this consent link was made for/);
    idp.withholdConsent(SNIPPETS_API_SCOPE, 'consent_required'); // Bob's authorize gave it; Adele's grant still has no new sign-in
    const again = await elicitation();
    assert.equal(again.elicitation.mode, 'url');
  });

  it('a tampered or unknown link is refused with a page, never a redirect', async () => {
    const { elicitation: e } = await elicitation();
    const tampered = e.url.replace(/request=([^.]+)\.(.)/, (_, data: string, c: string) => `request=${data}.${c === 'A' ? 'B' : 'A'}`);
    for (const link of [tampered, `${gw.url}/consent/downstream`, `${gw.url}/consent/downstream?request=x.y`]) {
      const response = await fetch(link, { redirect: 'manual' });
      assert.equal(response.status, 400, link);
      assert.match(await response.text(), /this consent link is not valid/);
    }
  });

  it('a backend pulling by RFC 8693 gets invalid_grant whose description names the scope and the link', async () => {
    const subjectToken = String(backend.requests.findLast((h) => h['x-mcp-identity'])!['x-mcp-identity']);
    const response = await fetch(`${gw.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('tools-backend:backend-secret').toString('base64')}` },
      body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, subject_token: subjectToken, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }),
    });
    assert.equal(response.status, 400);
    const body = (await response.json()) as { error: string; error_description: string };
    assert.equal(body.error, 'invalid_grant');
    assert.match(body.error_description, /has not consented to api:\/\/3f0e5c2a-snippets\/Snippets\.Read .*\(consent_required\); open http:\/\/localhost:\d+\/consent\/downstream\?request=\S+ to do it$/);
  });

  it('interaction_required (MFA) is elicited the same way, asking the user to sign in again', async () => {
    idp.withholdConsent(SNIPPETS_API_SCOPE, 'interaction_required');
    const { elicitation: e } = await elicitation();
    assert.equal(e.message, `Backend graph-tools needs you to sign in again (for example with multi-factor authentication) for ${SNIPPETS_API_SCOPE}. Open the link, then try again.`);
    // Entra's claims challenge goes to its authorize endpoint as `claims` (OIDC Core §5.5).
    const location = await createHeadlessBrowser().followUntil(e.url, (l) => l.pathname.endsWith('/oauth2/v2.0/authorize'));
    assert.equal(location.searchParams.get('claims'), MFA_CLAIMS_CHALLENGE);
    idp.withholdConsent(SNIPPETS_API_SCOPE, 'consent_required');
  });

  it('the user follows the link, consents upstream, and the retried call gets its token', async () => {
    const { elicitation: e } = await elicitation();
    const page = await followConsentLink(provider.browser, e.url, ADELE);
    assert.equal(page.status, 200, page.body.slice(0, 300));
    assert.match(page.body, /id="done"/);
    assert.match(page.body, /Snippets\.Read/);
    const before = backend.requests.length;
    const result = await eliciting.callTool({ name: 'echo_plain', arguments: {} });
    assert.equal((result.content as { text: string }[])[0]!.text, 'plain');
    assert.match(String(backend.requests.slice(before).at(-1)!['x-snippets-token']), /^Bearer ey/);
    // The exchange that succeeded used the refresh token the consent sign-in returned.
    const exchange = idp.tokenRequests.findLast((b) => b.get('grant_type') === 'refresh_token' && b.get('scope') === SNIPPETS_API_SCOPE)!;
    const consentSignIn = idp.tokenResponses.findLast((r) => r.status === 200 && typeof r.body['id_token'] === 'string')!;
    assert.equal(exchange.get('refresh_token'), consentSignIn.body['refresh_token']);
  });
  it('a refresh of the gateway grant rotates the upstream refresh token, and the next downstream mint uses the rotated one', async () => {
    // Why a refresh token in a downstream (refresh-for-resource) answer is not kept: the grant's own
    // refresh, at least once per gateway access token lifetime, stores Entra's rotated one already.
    const response = await fetch(`${gw.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: provider.tokens()!.refresh_token!, client_id: provider.clientInformation()!.client_id }),
    });
    assert.equal(response.status, 200);
    provider.saveTokens((await response.json()) as Parameters<HeadlessOAuthProvider['saveTokens']>[0]);
    const rotated = idp.tokenResponses.findLast((r) => r.status === 200 && typeof r.body['id_token'] === 'string')!.body['refresh_token'];
    await gw.ctx.store.delete(keys.downstreamToken(ADELE_KEY, [SNIPPETS_API_SCOPE]));
    await eliciting.callTool({ name: 'echo_plain', arguments: {} });
    const exchange = idp.tokenRequests.findLast((b) => b.get('grant_type') === 'refresh_token' && b.get('scope') === SNIPPETS_API_SCOPE)!;
    assert.equal(exchange.get('refresh_token'), rotated);
  });
});

describe('downstream consent link for a 2026-07-28 client (v2 SDK): InputRequiredResult, the link followed, the retry served', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mcpgw-consent-'));
  let idp: EntraShapedIdp;
  let system: Awaited<ReturnType<typeof startSnippetsBehindGateway>>;
  let gw: Harness;
  let provider: HeadlessV2OAuthProvider;
  let client: V2Client;
  /** What the client's elicitation handler does with each URL elicitation it is given. */
  let onElicitation: (params: { mode?: string; url?: string; message: string }) => Promise<void>;
  const elicited: { mode?: string; url?: string; message: string }[] = [];

  before(async () => {
    const port = await freePort();
    idp = await startGatewayAppIdp(port);
    system = await startSnippetsBehindGateway(
      dataDir,
      { downstreamTokens: [{ scopes: [SNIPPETS_API_SCOPE], header: 'x-snippets-token', tools: ['hello_mcp'] }] },
      { port, upstream: entraUpstream(idp) },
    );
    gw = system.gateway;
    provider = new HeadlessV2OAuthProvider(ADELE);
    const options = { capabilities: { elicitation: { url: {} } }, versionNegotiation: { mode: { pin: MODERN } } };
    const first = new V2StreamableHTTPClientTransport(new URL(gw.mcpUrl), { authProvider: provider });
    await assert.rejects(new V2Client({ name: 'consent-v2', version: '1.0.0' }, options).connect(first), V2UnauthorizedError);
    await first.finishAuth(provider.redirectedTo!.searchParams);
    client = new V2Client({ name: 'consent-v2', version: '1.0.0' }, options);
    client.setRequestHandler('elicitation/create', async (request) => {
      const params = request.params as { mode?: string; url?: string; message: string };
      elicited.push(params);
      await onElicitation(params);
      return { action: 'accept' };
    });
    await client.connect(new V2StreamableHTTPClientTransport(new URL(gw.mcpUrl), { authProvider: provider }));
  });
  after(async () => {
    await client?.close();
    await system?.close();
    await idp?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('the client opens the link (the user consents), accepts, retries; the gateway mints the token and the tool answers', async () => {
    assert.equal(client.getNegotiatedProtocolVersion(), MODERN);
    idp.withholdConsent(SNIPPETS_API_SCOPE, 'consent_required');
    onElicitation = async (params) => {
      const page = await followConsentLink(provider.browser, params.url!, ADELE);
      assert.match(page.body, /id="done"/);
    };
    const result = await client.callTool({ name: 'hello_mcp' });
    assert.match((result.content as { text: string }[])[0]!.text, /Adele/);
    assert.equal(elicited.length, 1);
    assert.equal(elicited[0]!.mode, 'url');
    assert.match(elicited[0]!.url!, /\/consent\/downstream\?request=/);
  });

  it('a retry that accepted before the user finished waits for the consent page, then is served', async () => {
    idp.withholdConsent(SNIPPETS_API_SCOPE, 'consent_required');
    await gw.ctx.store.delete(keys.downstreamToken(ADELE_KEY, [SNIPPETS_API_SCOPE])); // the token of the test before, cached
    elicited.length = 0;
    let finished: Promise<unknown> = Promise.resolve();
    // The client accepts at once; the user finishes in the browser a moment later.
    onElicitation = async (params) => {
      finished = new Promise((resolve) => setTimeout(resolve, 1500)).then(() => followConsentLink(provider.browser, params.url!, ADELE));
    };
    const started = Date.now();
    const result = await client.callTool({ name: 'hello_mcp' });
    assert.match((result.content as { text: string }[])[0]!.text, /Adele/);
    assert.ok(Date.now() - started >= 1500, 'the retry waited for the consent');
    assert.equal(elicited.length, 1, 'one elicitation: the retry was held, not answered with another');
    await finished;
  });
});
