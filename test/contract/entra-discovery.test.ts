import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { ENTRA_TEST_TENANT, type EntraShapedIdp, startEntraShapedIdp } from '../support/entra-shaped-idp.ts';

const ENTRA = 'https://login.microsoftonline.com';

/** A stored Entra discovery document (test/fixtures/entra/README.md), its host swapped for `origin`. */
function snapshot(name: string, origin: string): Record<string, unknown> {
  const text = readFileSync(new URL(`../fixtures/entra/${name}.json`, import.meta.url), 'utf8');
  return JSON.parse(text.replaceAll(`${ENTRA}/`, `${origin}/`)) as Record<string, unknown>;
}

/** The Entra look-alike serves Entra's own discovery documents, so the gateway meets Entra's metadata in tests. */
describe("the Entra look-alike's discovery documents equal Entra's", () => {
  let idp: EntraShapedIdp;
  before(async () => {
    idp = await startEntraShapedIdp({ client: { clientId: 'app', clientSecret: 'secret', redirectUris: ['http://127.0.0.1:9/callback'] } });
  });
  after(() => idp.close());

  for (const [name, tenant] of [
    ['tenant', ENTRA_TEST_TENANT],
    ['organizations', 'organizations'],
    ['common', 'common'],
  ] as const) {
    it(`${name}: /${tenant === ENTRA_TEST_TENANT ? '{tenant}' : tenant}/v2.0/.well-known/openid-configuration`, async () => {
      const response = await fetch(`${idp.authorityHost}/${tenant}/v2.0/.well-known/openid-configuration`);
      assert.equal(response.status, 200);
      const served = (await response.json()) as Record<string, unknown>;
      const expected = snapshot(name, idp.authorityHost);
      assert.deepEqual(Object.keys(served).sort(), Object.keys(expected).sort(), 'the same metadata keys');
      assert.deepEqual(served, expected);
    });
  }

  it("Entra's endpoints are served where the documents say: keys, authorize, token", async () => {
    for (const tenant of [ENTRA_TEST_TENANT, 'organizations', 'common']) {
      const metadata = snapshot(tenant === ENTRA_TEST_TENANT ? 'tenant' : tenant, idp.authorityHost);
      const keys = await fetch(String(metadata['jwks_uri']));
      assert.equal(keys.status, 200, `${tenant} keys`);
      assert.ok(((await keys.json()) as { keys: unknown[] }).keys.length > 0);
      const token = await fetch(String(metadata['token_endpoint']), {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'unknown', client_id: 'app', client_secret: 'secret' }),
      });
      assert.equal(token.status, 400, `${tenant} token`);
      const error = (await token.json()) as { error: string; error_codes: number[]; trace_id: string; correlation_id: string };
      assert.equal(error.error, 'invalid_grant');
      assert.deepEqual(error.error_codes, [70000]);
      assert.ok(error.trace_id && error.correlation_id);
      const authorize = await fetch(`${String(metadata['authorization_endpoint'])}?client_id=app`, { redirect: 'manual' });
      assert.notEqual(authorize.status, 404, `${tenant} authorize`);
    }
  });
});
