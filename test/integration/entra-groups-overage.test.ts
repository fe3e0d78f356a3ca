import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import pino from 'pino';
import { createEntraGraphGroups } from '../../src/oauth/graph-groups.ts';
import { ENTRA_TEST_TENANT, type EntraShapedIdp, startEntraShapedIdp } from '../support/entra-shaped-idp.ts';
import { type FakeGraph, startFakeGraph } from '../support/fake-graph.ts';
import { type Harness, mutableClock, startHarness } from '../support/gateway-harness.ts';
import { type McpBackend, startMcpBackend } from '../support/mcp-backend.ts';
import { freePort } from '../support/ports.ts';
import { HeadlessOAuthProvider } from '../support/sdk-oauth.ts';

const MEMBERS = '0c6f2e8a-4b1d-4f3e-9a7c-5d2b8e1f3a6c';
const OTHER = '9e1d3c5b-7a2f-4e6d-8b0c-1f3a5e7d9b2c';

/**
 * Entra's groups overage (id-token-claims-reference.md): the id_token carries `_claim_names`
 * instead of `groups`; a rule on groups makes the gateway read them from Microsoft Graph (a
 * loopback fake) with a token redeemed from the user's stored Entra refresh token.
 */
describe('groups overage: groups from Microsoft Graph', () => {
  let idp: EntraShapedIdp;
  let graph: FakeGraph;
  let backend: McpBackend;
  let gw: Harness;
  const clock = mutableClock();
  const logs: Record<string, unknown>[] = [];
  let accessToken: string;

  before(async () => {
    backend = await startMcpBackend();
    const port = await freePort();
    idp = await startEntraShapedIdp({
      client: { clientId: 'gateway-app', clientSecret: 'gateway-secret', redirectUris: [`http://localhost:${port}/callback`] },
    });
    idp.setEntraUser('adele@contoso.test', { groupsOverage: true });
    graph = await startFakeGraph({ issuer: idp.accessTokenIssuer, jwksUri: idp.jwksUri });
    const lines = new Writable({
      write(chunk, _encoding, done) {
        logs.push(JSON.parse(String(chunk)) as Record<string, unknown>);
        done();
      },
    });
    gw = await startHarness({
      port,
      clock,
      logger: pino({ level: 'warn' }, lines),
      backends: [
        {
          name: 'tools',
          path: '/mcp',
          url: backend.mcpUrl,
          policy: { rules: [{ name: 'members', tools: ['echo'], groups: [MEMBERS] }] },
        },
      ],
      upstream: {
        // Default scopes: openid profile email offline_access User.Read.
        entra: { tenantId: ENTRA_TEST_TENANT, clientId: 'gateway-app', clientSecret: 'gateway-secret', authorityHost: idp.authorityHost, graphHost: graph.url },
      },
    });
    const provider = new HeadlessOAuthProvider({ login: 'adele@contoso.test', password: 'correct horse' });
    assert.equal(await auth(provider, { serverUrl: gw.mcpUrl }), 'REDIRECT');
    assert.equal(await auth(provider, { serverUrl: gw.mcpUrl, authorizationCode: provider.authorizationCode! }), 'AUTHORIZED');
    accessToken = provider.tokens()!.access_token;
  });
  after(async () => {
    idp.setEntraUser('adele@contoso.test', { groupsOverage: false, groups: ['4d2f6a8c-1e3b-4c5d-9f7a-0b2c4d6e8f1a'] });
    await gw.close();
    await idp.close();
    await graph.close();
    await backend.close();
  });

  /** tools/call echo as adele: the tool's text, or the refusal's message. */
  async function echo(): Promise<string> {
    const client = new Client({ name: 'overage', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(gw.mcpUrl), { requestInit: { headers: { Authorization: `Bearer ${accessToken}` } } }));
    try {
      const result = await client.callTool({ name: 'echo', arguments: { text: 'hi' } });
      return (result.content as { text: string }[])[0]!.text;
    } catch (error) {
      return (error as Error).message;
    } finally {
      await client.close();
    }
  }

  it('the signed-in user is marked as having a groups overage', async () => {
    const record = await gw.ctx.grants.validateAccessToken(accessToken);
    assert.equal(record?.user.groupsOverage, true);
    assert.deepEqual(record?.user.groups, []);
  });

  it('a rule on groups is judged on the groups Graph gives, read with a token from the stored refresh token (no new sign-in), then cached', async () => {
    graph.groups = [OTHER, MEMBERS];
    assert.equal(await echo(), 'hi');
    assert.equal(graph.requests.length, 1);
    const [call] = graph.requests;
    assert.equal(call!.method, 'POST');
    assert.equal(call!.path, '/v1.0/me/getMemberGroups');
    assert.deepEqual(JSON.parse(call!.body), { securityEnabledOnly: true });
    // The Graph token: Entra's answer to a refresh-token grant asking for User.Read alone.
    const index = idp.tokenRequests.findIndex((body) => body.get('grant_type') === 'refresh_token' && body.get('scope') === 'User.Read');
    assert.ok(index >= 0, 'a refresh asked Entra for a Graph token');
    assert.equal(call!.authorization, `Bearer ${idp.tokenResponses[index]!.body['access_token']}`);
    assert.equal(idp.authorizeRequests.length, 1, 'no new sign-in');

    assert.equal(await echo(), 'hi');
    assert.equal(graph.requests.length, 1, 'the groups came from the Store');
  });

  it('a Graph outage denies (never allows) and the log says why; once Graph answers, the rule allows again', async () => {
    clock.advance(601); // past the cache
    for (const outage of [503, 'reset'] as const) {
      clock.advance(31); // past the memory of the previous failure
      graph.outage = outage;
      logs.length = 0;
      assert.equal(await echo(), 'MCP error -32602: Tool echo not found');
      const warning = logs.find((l) => String(l['msg']).startsWith('groups overage:'));
      assert.ok(warning, `a warning for ${outage}: ${JSON.stringify(logs)}`);
      assert.equal(warning['userKey'], `${ENTRA_TEST_TENANT}|8f3c2a1e-5b7d-4e9f-a1c3-2d4e6f8a0b1c`);
      assert.match(
        String(warning['msg']),
        outage === 503
          ? /^groups overage: the user's groups could not be read from Microsoft Graph \(Graph answered 503 serviceNotAvailable\); rules on groups deny this request$/
          : /^groups overage: the user's groups could not be read from Microsoft Graph \(Graph unreachable: fetch failed: .+\); rules on groups deny this request$/,
      );
    }
    graph.outage = undefined;
    clock.advance(31);
    assert.equal(await echo(), 'hi');
  });

  it('during an outage Graph is asked once per user per 30 s (each request still denied, the log says why); after 30 s it is asked again', async () => {
    clock.advance(601); // past the cache
    graph.outage = 503;
    const before = graph.requests.length;
    logs.length = 0;
    for (let i = 0; i < 3; i++) assert.equal(await echo(), 'MCP error -32602: Tool echo not found');
    clock.advance(29);
    assert.equal(await echo(), 'MCP error -32602: Tool echo not found');
    assert.equal(graph.requests.length - before, 1, 'one Graph attempt for four denied calls');
    const last = logs.filter((l) => String(l['msg']).startsWith('groups overage:')).at(-1);
    assert.equal(
      last?.['msg'],
      "groups overage: the user's groups could not be read from Microsoft Graph (Graph answered 503 serviceNotAvailable; not asked again for 1 s); rules on groups deny this request",
    );

    clock.advance(2); // 31 s after the failure
    graph.outage = undefined;
    graph.groups = [MEMBERS];
    assert.equal(await echo(), 'hi');
    assert.equal(graph.requests.length - before, 2, 'asked again once the 30 s had passed');
  });

  it('concurrent lookups for one user share one Graph read, in an outage and out of it', async () => {
    // A second resolver over the gateway's own Store, sealer and IdP: its lookups can be started at the same instant.
    const groupsOf = createEntraGraphGroups({ graphHost: graph.url, groupsCacheSeconds: 600 }, { ...gw.ctx, logger: pino({ level: 'silent' }) });
    const record = (await gw.ctx.grants.validateAccessToken(accessToken))!;
    clock.advance(601); // past the cache
    graph.outage = 503;
    let before = graph.requests.length;
    assert.deepEqual(await Promise.all([groupsOf(record), groupsOf(record), groupsOf(record)]), [undefined, undefined, undefined]);
    assert.equal(graph.requests.length - before, 1);

    clock.advance(31);
    graph.outage = undefined;
    before = graph.requests.length;
    assert.deepEqual(await Promise.all([groupsOf(record), groupsOf(record), groupsOf(record)]), [[MEMBERS], [MEMBERS], [MEMBERS]]);
    assert.equal(graph.requests.length - before, 1);
  });

  it('a user no longer in the group is refused once the cache has run out', async () => {
    clock.advance(601);
    graph.groups = [OTHER];
    assert.equal(await echo(), 'MCP error -32602: Tool echo not found');
  });

  it("`hasgroups: true` (Entra's implicit-flow overage marker) instead of `_claim_names` is an overage too", async () => {
    idp.setEntraUser('adele@contoso.test', { groupsOverage: 'hasgroups' });
    const provider = new HeadlessOAuthProvider({ login: 'adele@contoso.test', password: 'correct horse' });
    assert.equal(await auth(provider, { serverUrl: gw.mcpUrl }), 'REDIRECT');
    assert.equal(await auth(provider, { serverUrl: gw.mcpUrl, authorizationCode: provider.authorizationCode! }), 'AUTHORIZED');
    const record = await gw.ctx.grants.validateAccessToken(provider.tokens()!.access_token);
    assert.equal(record?.user.groupsOverage, true);
    assert.deepEqual(record?.user.groups, []);
  });
});
