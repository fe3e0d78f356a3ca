import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import type { UpstreamIdp, UserIdentity } from '../ports/idp.ts';
import { SqliteStore } from '../store/sqlite.ts';
import { OAuthError } from './errors.ts';
import { createGrants, type GrantOptions, userKeyOf } from './grants.ts';
import { createSealer } from './secrets.ts';

describe('userKeyOf', () => {
  const tid = '72f988bf-86f1-41af-91ab-2d7cd011db47';
  const base: UserIdentity = { issuer: '', subject: 'sub-1', objectId: 'oid-1', tenantId: tid, roles: [], groups: [] };
  const cases: [string, UserIdentity, string][] = [
    ['Entra v2 issuer of that tenant', { ...base, issuer: `https://login.microsoftonline.com/${tid}/v2.0` }, `${tid}|oid-1`],
    ['another IdP emitting tid/oid claims', { ...base, issuer: 'https://idp.example.com' }, 'https://idp.example.com|sub-1'],
    ['Entra issuer of another tenant', { ...base, issuer: 'https://login.microsoftonline.com/other/v2.0' }, 'https://login.microsoftonline.com/other/v2.0|sub-1'],
    ['no oid', { ...base, objectId: undefined, issuer: `https://login.microsoftonline.com/${tid}/v2.0` }, `https://login.microsoftonline.com/${tid}/v2.0|sub-1`],
  ];
  for (const [name, user, expected] of cases) it(name, () => assert.equal(userKeyOf(user), expected));
});

/** Grants over a real SQLite Store (in a temp file, so a test can read it as a dump) and a clock tests move. */
function setup(options: Partial<GrantOptions> = {}) {
  let nowMs = 1_700_000_000_000;
  const clock = {
    nowSeconds: () => Math.floor(nowMs / 1000),
    nowMs: () => nowMs,
    advance(seconds: number) {
      nowMs += seconds * 1000;
    },
  };
  const path = join(mkdtempSync(join(tmpdir(), 'grants-')), 'state.db');
  const store = SqliteStore.open({ path, clock });
  const sealer = createSealer([{ id: 'k1', key: randomBytes(32) }]);
  // These grants carry no upstream tokens, so the IdP is never asked.
  const idp = {} as UpstreamIdp;
  const grantOptions = { accessTokenTtlSeconds: 3600, refreshTokenTtlSeconds: 86400, refreshReuseIntervalSeconds: 2, ...options };
  const grants = createGrants({ store, clock, sealer, idp }, grantOptions);
  /** Another replica over the same Store. */
  const replica = () => createGrants({ store, clock, sealer, idp }, grantOptions);
  const user: UserIdentity = { issuer: 'https://idp.example.com', subject: 'alice', roles: [], groups: [] };
  const issue = async (scopes = ['mcp:read', 'mcp:write']) =>
    (await grants.create({ user, userKey: userKeyOf(user), clientId: 'client-a', scopes, resource: RESOURCE })).tokens;
  const dump = () => {
    const db = new DatabaseSync(path, { readOnly: true });
    const rows = db.prepare('SELECT key, value FROM kv UNION ALL SELECT key, member FROM set_members').all();
    db.close();
    return JSON.stringify(rows);
  };
  return { clock, store, grants, replica, issue, dump };
}

const RESOURCE = 'http://localhost:8080/mcp';

async function refused(promise: Promise<unknown>): Promise<{ code: string; description: string }> {
  const error = await promise.then(
    () => assert.fail('expected an OAuthError'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof OAuthError, String(error));
  return { code: error.code, description: error.description };
}

describe('grants: refresh rotation', () => {
  it('a refresh returns a new pair; the new access token works and carries the grant', async () => {
    const { grants, issue } = setup();
    const first = await issue();
    const second = await grants.refresh(first.refresh_token, 'client-a', {});
    assert.notEqual(second.access_token, first.access_token);
    assert.notEqual(second.refresh_token, first.refresh_token);
    assert.equal(second.scope, 'mcp:read mcp:write');
    assert.deepEqual((await grants.validateAccessToken(second.access_token))?.scopes, ['mcp:read', 'mcp:write']);
  });

  it('the Store never holds a token: after a refresh (reuse record included) a dump has none of them', async () => {
    const { grants, issue, dump } = setup();
    const first = await issue();
    const second = await grants.refresh(first.refresh_token, 'client-a', {});
    const rows = dump();
    assert.match(rows, /rt-rotation:/, 'the reuse record is there');
    for (const token of [first.access_token, first.refresh_token, second.access_token, second.refresh_token]) {
      assert.ok(!rows.includes(token.slice(9)), `the dump holds ${token.slice(0, 12)}…`);
    }
  });
});

describe('grants: a narrower scope on refresh (RFC 6749 §6)', () => {
  it('a refresh without scope gets the originally granted scopes after a narrowed one', async () => {
    const { grants, issue } = setup();
    const first = await issue();
    const narrowed = await grants.refresh(first.refresh_token, 'client-a', { scopes: ['mcp:read'] });
    assert.equal(narrowed.scope, 'mcp:read');
    assert.deepEqual((await grants.validateAccessToken(narrowed.access_token))?.scopes, ['mcp:read']);
    const full = await grants.refresh(narrowed.refresh_token, 'client-a', {});
    assert.equal(full.scope, 'mcp:read mcp:write');
    assert.deepEqual((await grants.validateAccessToken(full.access_token))?.scopes, ['mcp:read', 'mcp:write']);
  });

  it('a wider scope is invalid_scope and the refresh token stays usable', async () => {
    const { grants, issue } = setup();
    const first = await issue(['mcp:read']);
    assert.deepEqual(await refused(grants.refresh(first.refresh_token, 'client-a', { scopes: ['mcp:read', 'mcp:admin'] })), {
      code: 'invalid_scope',
      description: 'scope exceeds the original grant: mcp:admin',
    });
    assert.equal((await grants.refresh(first.refresh_token, 'client-a', {})).scope, 'mcp:read');
  });
});

describe('grants: reuse detection and the reuse interval', () => {
  const REUSED = { code: 'invalid_grant', description: 'refresh token was already used; the grant has been revoked' };

  it('within the reuse interval the old refresh token returns the same rotated pair, and the grant lives', async () => {
    const { grants, issue, clock } = setup();
    const first = await issue();
    const rotated = await grants.refresh(first.refresh_token, 'client-a', {});
    clock.advance(1.9);
    assert.deepEqual(await grants.refresh(first.refresh_token, 'client-a', {}), rotated);
    assert.ok(await grants.validateAccessToken(rotated.access_token));
    assert.ok(await grants.refresh(rotated.refresh_token, 'client-a', {}));
  });

  it('two refreshes at once with one token both get the same pair (a client that retried)', async () => {
    const { grants, issue } = setup();
    const first = await issue();
    const [a, b] = await Promise.all([grants.refresh(first.refresh_token, 'client-a', {}), grants.refresh(first.refresh_token, 'client-a', {})]);
    assert.deepEqual(a, b);
    assert.ok(await grants.validateAccessToken(a.access_token));
  });

  it('after the reuse interval the old refresh token revokes the whole grant', async () => {
    const { grants, issue, clock } = setup();
    const first = await issue();
    const rotated = await grants.refresh(first.refresh_token, 'client-a', {});
    clock.advance(2);
    assert.deepEqual(await refused(grants.refresh(first.refresh_token, 'client-a', {})), REUSED);
    assert.equal(await grants.validateAccessToken(rotated.access_token), undefined);
    assert.equal((await refused(grants.refresh(rotated.refresh_token, 'client-a', {}))).code, 'invalid_grant');
  });

  it('within the interval, once the rotated refresh token was itself used, the old one is reuse', async () => {
    const { grants, issue } = setup();
    const first = await issue();
    const rotated = await grants.refresh(first.refresh_token, 'client-a', {});
    const third = await grants.refresh(rotated.refresh_token, 'client-a', {});
    assert.deepEqual(await refused(grants.refresh(first.refresh_token, 'client-a', {})), REUSED);
    assert.equal(await grants.validateAccessToken(third.access_token), undefined);
  });

  it('within the interval, another client presenting the old token ends the grant', async () => {
    const { grants, issue } = setup();
    const first = await issue();
    const rotated = await grants.refresh(first.refresh_token, 'client-a', {});
    assert.deepEqual(await refused(grants.refresh(first.refresh_token, 'client-b', {})), REUSED);
    assert.equal(await grants.validateAccessToken(rotated.access_token), undefined);
  });

  it('with the reuse interval 0, presenting a rotated token at once revokes the grant', async () => {
    const { grants, issue } = setup({ refreshReuseIntervalSeconds: 0 });
    const first = await issue();
    const rotated = await grants.refresh(first.refresh_token, 'client-a', {});
    assert.deepEqual(await refused(grants.refresh(first.refresh_token, 'client-a', {})), REUSED);
    assert.equal(await grants.validateAccessToken(rotated.access_token), undefined);
  });
});

describe('grants: the access-token cache bound across replicas', () => {
  it('a token revoked on one replica is refused on another within cacheMs, and trusted no longer', async () => {
    const { grants, replica, issue, clock } = setup({ cacheMs: 1000 });
    const tokens = await issue();
    assert.ok(await grants.validateAccessToken(tokens.access_token), 'cached on this replica');
    await replica().revokeToken(tokens.access_token, 'client-a');
    clock.advance(0.999);
    assert.ok(await grants.validateAccessToken(tokens.access_token), 'still trusted inside the bound');
    clock.advance(0.001);
    assert.equal(await grants.validateAccessToken(tokens.access_token), undefined);
  });

  it('with cacheMs 0 every call reads the Store: a revocation elsewhere is seen at once', async () => {
    const { grants, replica, issue } = setup({ cacheMs: 0 });
    const tokens = await issue();
    assert.ok(await grants.validateAccessToken(tokens.access_token));
    await replica().revokeToken(tokens.access_token, 'client-a');
    assert.equal(await grants.validateAccessToken(tokens.access_token), undefined);
  });
});
