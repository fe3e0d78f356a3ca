import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { mutableClock } from '../../test/support/gateway-harness.ts';
import type { AccessTokenRecord } from '../ports/records.ts';
import { createIdentityAssertions } from './identity-assertion.ts';

const SIGNING_KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const AUDIENCE = 'http://127.0.0.1:9000/mcp';

describe('identity assertions: reuse on the injected clock', () => {
  it('reuses an assertion until 60 s before it expires, then signs a new one', async () => {
    const clock = mutableClock(1_700_000_000);
    const assertions = await createIdentityAssertions({ signingKeyPem: SIGNING_KEY, issuer: 'http://127.0.0.1:8080', clock });
    const record: AccessTokenRecord = {
      grantId: 'g-1',
      clientId: 'client-a',
      userKey: 'https://idp.example.com|alice',
      user: { issuer: 'https://idp.example.com', subject: 'alice', roles: [], groups: [] },
      scopes: ['mcp:tools'],
      resource: AUDIENCE,
      expiresAt: 1_700_003_600,
    };
    const first = await assertions.assertionFor('mcpgw_at_x', record, AUDIENCE, 300);
    assert.deepEqual([decodeJwt(first).iat, decodeJwt(first).exp], [1_700_000_000, 1_700_000_300]);
    clock.advance(239);
    assert.equal(await assertions.assertionFor('mcpgw_at_x', record, AUDIENCE, 300), first, 'reused 61 s before its expiry');
    clock.advance(1);
    const renewed = await assertions.assertionFor('mcpgw_at_x', record, AUDIENCE, 300);
    assert.notEqual(renewed, first);
    assert.equal(decodeJwt(renewed).iat, 1_700_000_240, 'signed at the clock’s time');
  });
});
