import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { keys } from '../../src/oauth/keys.ts';

/**
 * docs/storage-keys.md and src/oauth/keys.ts (where every Store key is built) describe the same
 * keys: each key the code builds matches a documented pattern, and each documented pattern is a
 * key the code builds. A documented `<placeholder>` stands for any non-empty text.
 */
const documented = readFileSync(new URL('../../docs/storage-keys.md', import.meta.url), 'utf8')
  .split('\n')
  .map((line) => /^\| `([^`]+)` \|/.exec(line)?.[1])
  .filter((pattern): pattern is string => pattern !== undefined);

function patternRegExp(pattern: string): RegExp {
  const parts = pattern.split(/<[^>]+>/).map((literal) => literal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('.+')}$`);
}

/** One key of each builder, from sample arguments shaped like real ones. */
const built: Record<keyof typeof keys, string> = {
  client: keys.client('https://app.example.com/client.json'),
  failedClient: keys.failedClient('https://app.example.com/client.json'),
  authorizationRequest: keys.authorizationRequest('7b0c1e0e-1a8e-4f5e-9a39-0b7bd1f1c2d3'),
  upstreamState: keys.upstreamState('state-value'),
  code: keys.code('code-hash'),
  usedCode: keys.usedCode('code-hash'),
  accessToken: keys.accessToken('token-hash'),
  refreshToken: keys.refreshToken('token-hash'),
  usedRefreshToken: keys.usedRefreshToken('token-hash'),
  refreshRotation: keys.refreshRotation('token-hash'),
  grant: keys.grant('grant-id'),
  grantTokens: keys.grantTokens('grant-id'),
  userGrants: keys.userGrants('tid|oid'),
  consent: keys.consent('tid|oid', 'client-id'),
  userConsents: keys.userConsents('tid|oid'),
  accountSession: keys.accountSession('session-hash'),
  usedAssertion: keys.usedAssertion('https://idp.example.com', 'jti-1'),
  rateLimit: keys.rateLimit('token', '203.0.113.7', 28_000_000),
  quota: keys.quota('snippets', 'saves', 'user\ntid|oid', 29_000_000),
  mcpSession: keys.mcpSession('http://localhost:8080/mcp', 'session-id'),
  legacySession: keys.legacySession('session-id'),
  devIdpEntry: keys.devIdpEntry('Session', 'session-id'),
  devIdpByUid: keys.devIdpByUid('Session', 'uid'),
  devIdpByUserCode: keys.devIdpByUserCode('DeviceCode', 'user-code'),
  devIdpGrant: keys.devIdpGrant('grant-id'),
  graphGroups: keys.graphGroups('tid|oid'),
  downstreamToken: keys.downstreamToken('tid|oid', ['https://graph.microsoft.com/User.Read']),
  clientCapabilities: keys.clientCapabilities('grant-id'),
};

describe('docs/storage-keys.md lists every Store key of src/oauth/keys.ts', () => {
  it('reads the key table', () => assert.ok(documented.length >= 20, `${documented.length} documented keys`));

  for (const [name, key] of Object.entries(built)) {
    it(`keys.${name} (${key}) is documented`, () => {
      const matching = documented.filter((pattern) => patternRegExp(pattern).test(key));
      assert.ok(matching.length > 0, `${key} matches no key of docs/storage-keys.md`);
    });
  }

  it('every documented key is one the code builds', () => {
    const unbuilt = documented.filter((pattern) => !Object.values(built).some((key) => patternRegExp(pattern).test(key)));
    assert.deepEqual(unbuilt, []);
  });
});
