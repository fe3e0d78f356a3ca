import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Audit } from '../audit/audit.ts';
import { SECURITY_EVENT, userFields } from '../audit/events.ts';
import { createBoundedCache } from '../ports/bounded-cache.ts';
import { type Clock, nowMsOf } from '../ports/clock.ts';
import type { UpstreamIdp, UpstreamTokens, UserIdentity } from '../ports/idp.ts';
import { UpstreamRefusedError, UpstreamUnavailableError } from '../ports/idp.ts';
import type { AccessTokenRecord, GrantRecord } from '../ports/records.ts';
import type { Store } from '../ports/store.ts';
import { OAuthError } from './errors.ts';
import { keys } from './keys.ts';
import { openForHolder, randomToken, type Sealer, sealForHolder, sha256 } from './secrets.ts';

const ACCESS_TOKEN_PREFIX = 'mcpgw_at_';
const REFRESH_TOKEN_PREFIX = 'mcpgw_rt_';

export interface GrantOptions {
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  /** How long a replica may trust a token lookup it made (bounds cross-replica revocation delay). */
  cacheMs?: number;
  /** After a rotation, the old refresh token returns the same new pair for this long; 0 = never. */
  refreshReuseIntervalSeconds?: number;
}

/** Revocation on one replica must be effective on every replica within one second. */
export const MAX_TOKEN_CACHE_MS = 1000;
const TOKEN_CACHE_MAX_ENTRIES = 50_000;
/** A rotation in progress holds its claim at most this long (an upstream refresh included). */
const ROTATION_CLAIM_SECONDS = 30;
/** A repeated refresh waits this long at most for a rotation in progress, polling the Store. */
const ROTATION_WAIT_MS = 10_000;
const ROTATION_POLL_MS = 25;

/** A refresh token's rotation: claimed (no rotatedAt), then, for the reuse interval, its result. */
interface RotationRecord {
  grantId: string;
  clientId: string;
  rotatedAt?: number;
  /** SHA-256 of the refresh token it was rotated to. */
  refreshHash?: string;
  /** The rotated pair, sealed for the holder of the old refresh token (sealForHolder). */
  pair?: string;
}

export interface IssuedTokens {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token: string;
  scope: string;
}

/** A token response without a refresh token (assertion and client_credentials grants). */
export type AccessOnlyTokens = Omit<IssuedTokens, 'refresh_token'>;

/** A grant to create: the record without what creating it sets (its id may be chosen beforehand). */
export type NewGrant = Omit<GrantRecord, 'grantId' | 'createdAt' | 'expiresAt' | 'refreshTokenHash'> & Partial<Pick<GrantRecord, 'grantId'>>;

/**
 * Stable key of a user: Entra's tid+oid (DESIGN §6) when the validated issuer is that tenant's
 * v2.0 issuer; for any other IdP issuer+sub, so claims named tid/oid there cannot collide.
 */
export function userKeyOf(user: UserIdentity): string {
  const entraShaped = user.tenantId && user.objectId && user.issuer.endsWith(`/${user.tenantId}/v2.0`);
  return entraShaped ? `${user.tenantId}|${user.objectId}` : `${user.issuer}|${user.subject}`;
}

/** A validated access token kept in memory (keyed by the token itself). */
interface CachedToken {
  record: AccessTokenRecord;
  until: number;
  hash: string;
}

/** The record an access token of `grant` resolves to. */
function accessRecordOf(grant: GrantRecord, scopes: string[], expiresAt: number): AccessTokenRecord {
  const { grantId, clientId, userKey, user, resource } = grant;
  return { grantId, clientId, userKey, user, scopes, resource, expiresAt };
}

/**
 * Grants and the tokens issued from them: issue, rotate (OAuth 2.1 §4.3.1), detect refresh
 * reuse (revoke the grant), validate access tokens, revoke (RFC 7009).
 */
export function createGrants(
  deps: {
    store: Store;
    clock: Clock;
    sealer: Sealer;
    idp: UpstreamIdp;
    audit?: Audit;
    /** Told how each bearer token was checked (metrics): from the cache, or read from the Store. */
    onValidation?: (result: 'cached' | 'valid' | 'invalid') => void;
  },
  options: GrantOptions,
) {
  const { store, clock, sealer, idp } = deps;
  const cacheMs = Math.min(options.cacheMs ?? MAX_TOKEN_CACHE_MS, MAX_TOKEN_CACHE_MS);
  const reuseIntervalSeconds = options.refreshReuseIntervalSeconds ?? 0;
  // Keyed by the token itself so a hit costs no hash (benchmark 2); `cachedByHash` lets a
  // revocation, which knows only hashes, drop the entry. Process memory only, never the Store.
  const cachedByHash = new Map<string, string>();
  const cache = createBoundedCache<string, CachedToken>(TOKEN_CACHE_MAX_ENTRIES, (evicted) =>
    cachedByHash.delete(evicted.hash),
  );
  function forget(hash: string): void {
    const token = cachedByHash.get(hash);
    if (token === undefined) return;
    cachedByHash.delete(hash);
    cache.delete(token);
  }

  /** New access + refresh tokens of `grant`; the access token carries `scopes` (⊆ the grant's). */
  async function issueTokens(grant: GrantRecord, scopes = grant.scopes): Promise<IssuedTokens> {
    const now = clock.nowSeconds();
    const accessToken = randomToken(ACCESS_TOKEN_PREFIX);
    const refreshToken = randomToken(REFRESH_TOKEN_PREFIX);
    const accessHash = sha256(accessToken);
    const refreshHash = sha256(refreshToken);
    const accessTtl = Math.min(options.accessTokenTtlSeconds, grant.expiresAt - now);
    const record = accessRecordOf(grant, scopes, now + accessTtl);
    const grantTtl = grant.expiresAt - now;
    grant.refreshTokenHash = refreshHash;
    // Index entries first, tokens last: a crash in between leaves only unusable index entries.
    await store.addToSet(keys.grantTokens(grant.grantId), keys.accessToken(accessHash), grantTtl);
    await store.addToSet(keys.grantTokens(grant.grantId), keys.refreshToken(refreshHash), grantTtl);
    await store.set(keys.grant(grant.grantId), grant, grantTtl);
    await store.set(keys.refreshToken(refreshHash), { grantId: grant.grantId }, grantTtl);
    await store.set(keys.accessToken(accessHash), record, accessTtl);
    return {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: accessTtl,
      refresh_token: refreshToken,
      scope: scopes.join(' '),
    };
  }

  async function create(input: NewGrant): Promise<{ grant: GrantRecord; tokens: IssuedTokens }> {
    const now = clock.nowSeconds();
    const grant: GrantRecord = {
      ...input,
      grantId: input.grantId ?? randomUUID(),
      createdAt: now,
      expiresAt: now + options.refreshTokenTtlSeconds,
    };
    await store.addToSet(keys.userGrants(input.userKey), grant.grantId, options.refreshTokenTtlSeconds);
    return { grant, tokens: await issueTokens(grant) };
  }

  /**
   * A grant that is one access token and no refresh token: an assertion grant (ID-JAG, Entra
   * app-only token; RFC 7521 §4.1 lets the assertion be presented again instead) or
   * client_credentials (OAuth 2.1 §4.2.2: a refresh token SHOULD NOT be issued). It ends with the
   * token (at most `untilAt`) and is revocable like any grant (/account, /revoke).
   */
  async function createAccessOnly(input: NewGrant, untilAt?: number): Promise<{ grant: GrantRecord; tokens: AccessOnlyTokens }> {
    const now = clock.nowSeconds();
    const ttl = Math.max(1, Math.min(options.accessTokenTtlSeconds, (untilAt ?? Number.POSITIVE_INFINITY) - now));
    const grant: GrantRecord = { ...input, grantId: input.grantId ?? randomUUID(), createdAt: now, expiresAt: now + ttl };
    const accessToken = randomToken(ACCESS_TOKEN_PREFIX);
    const accessHash = sha256(accessToken);
    const record = accessRecordOf(grant, grant.scopes, grant.expiresAt);
    await store.addToSet(keys.userGrants(input.userKey), grant.grantId, ttl);
    await store.addToSet(keys.grantTokens(grant.grantId), keys.accessToken(accessHash), ttl);
    await store.set(keys.grant(grant.grantId), grant, ttl);
    await store.set(keys.accessToken(accessHash), record, ttl);
    return { grant, tokens: { access_token: accessToken, token_type: 'Bearer', expires_in: ttl, scope: grant.scopes.join(' ') } };
  }

  async function revokeGrant(grantId: string): Promise<void> {
    const grant = await store.get<GrantRecord>(keys.grant(grantId));
    const tokenKeys = await store.members(keys.grantTokens(grantId));
    for (const key of tokenKeys) forget(key.slice('at:'.length));
    await store.delete(...tokenKeys, keys.grant(grantId), keys.grantTokens(grantId));
    if (grant) await store.removeFromSet(keys.userGrants(grant.userKey), grantId);
  }

  /**
   * Refresh-token grant: rotation, reuse detection, upstream refresh (DESIGN §4).
   * Crash-safe order: nothing is consumed until the new tokens are written; the old refresh token
   * is then taken atomically. A store or IdP failure part-way leaves the old token usable.
   * One request rotates a token (a claim in the Store); the same token presented again meanwhile
   * or soon after is answered by repeatedRefresh.
   */
  async function refresh(refreshToken: string, clientId: string, requested: { scopes?: string[]; resource?: string }): Promise<IssuedTokens> {
    const hash = sha256(refreshToken);
    const entry = await store.get<{ grantId: string }>(keys.refreshToken(hash));
    if (!entry) return repeatedRefresh(refreshToken, hash, clientId);
    const grant = await store.get<GrantRecord>(keys.grant(entry.grantId));
    const now = clock.nowSeconds();
    if (!grant || grant.expiresAt <= now) throw new OAuthError('invalid_grant', 'the grant has expired or was revoked');
    if (grant.clientId !== clientId) {
      await revokeGrant(grant.grantId);
      throw new OAuthError('invalid_grant', 'refresh token was issued to another client');
    }
    if (requested.resource !== undefined && requested.resource !== grant.resource) {
      throw new OAuthError('invalid_target', `refresh token is for resource ${grant.resource}`);
    }
    // RFC 6749 §6: a narrower scope applies to this access token only; the grant keeps what the
    // user approved, so a later refresh without `scope` gets all of it again.
    const scopes = requested.scopes ?? grant.scopes;
    const widened = scopes.filter((s) => !grant.scopes.includes(s));
    if (widened.length > 0) throw new OAuthError('invalid_scope', `scope exceeds the original grant: ${widened.join(' ')}`);
    const claim: RotationRecord = { grantId: grant.grantId, clientId };
    if (!(await store.setIfAbsent(keys.refreshRotation(hash), claim, ROTATION_CLAIM_SECONDS))) {
      return repeatedRefresh(refreshToken, hash, clientId);
    }
    let tokens: IssuedTokens;
    try {
      await refreshUpstream(grant);
      tokens = await issueTokens(grant, scopes);
    } catch (error) {
      await store.delete(keys.refreshRotation(hash));
      if (error instanceof UpstreamRefusedError) {
        await revokeGrant(grant.grantId);
        throw new OAuthError('invalid_grant', `the identity provider refused to renew the sign-in (${error.upstreamError})`);
      }
      if (error instanceof UpstreamUnavailableError) {
        // A passing upstream outage must not end the grant: the old refresh token stays valid.
        throw new OAuthError('temporarily_unavailable', 'the identity provider is unreachable; try again later', { cause: error });
      }
      throw error;
    }
    if (!(await store.take(keys.refreshToken(hash)))) {
      // Rotated by a request that claimed after our read (reuse interval 0), or revoked meanwhile:
      // either way the tokens just written must not outlive the grant.
      return endForReuse(grant.grantId, clientId);
    }
    await store.set(keys.usedRefreshToken(hash), grant.grantId, Math.max(1, grant.expiresAt - now));
    await store.removeFromSet(keys.grantTokens(grant.grantId), keys.refreshToken(hash));
    if (reuseIntervalSeconds > 0) {
      const rotated: RotationRecord = {
        ...claim,
        rotatedAt: now,
        refreshHash: sha256(tokens.refresh_token),
        pair: sealForHolder(refreshToken, JSON.stringify(tokens)),
      };
      await store.set(keys.refreshRotation(hash), rotated, reuseIntervalSeconds);
    } else {
      await store.delete(keys.refreshRotation(hash));
    }
    deps.audit?.record({
      'event.name': SECURITY_EVENT.refresh,
      ...userFields(grant.user, grant.userKey),
      'oauth.client.id': clientId,
      'oauth.grant.id': grant.grantId,
      'oauth.scope': tokens.scope,
    });
    return tokens;
  }

  /** OAuth 2.1 §4.3.1: a refresh token used twice leaked; the whole grant ends. */
  async function endForReuse(grantId: string, clientId: string): Promise<never> {
    const grant = await store.get<GrantRecord>(keys.grant(grantId));
    await revokeGrant(grantId);
    deps.audit?.record({
      'event.name': SECURITY_EVENT.refreshReuse,
      ...(grant ? userFields(grant.user, grant.userKey) : {}),
      'oauth.client.id': clientId,
      'oauth.grant.id': grantId,
    });
    throw new OAuthError('invalid_grant', 'refresh token was already used; the grant has been revoked');
  }

  /**
   * A refresh token presented after (or while) it was rotated. Within the reuse interval, the
   * same client gets the same rotated pair while that pair's refresh token is unused — a client
   * that retried, or sent two requests at once, keeps its grant. Anything else is reuse: the token
   * leaked, and the whole grant ends (OAuth 2.1 §4.3.1; RFC 9700 §4.14.2).
   */
  async function repeatedRefresh(refreshToken: string, hash: string, clientId: string): Promise<IssuedTokens> {
    const rotation = await settledRotation(hash);
    if (rotation?.rotatedAt === undefined && (rotation || (await store.get(keys.refreshToken(hash))))) {
      // The other request is still rotating, or failed and left the token as it was.
      throw new OAuthError('temporarily_unavailable', 'another request is refreshing with this token; try again', {
        headers: { 'retry-after': '1' },
      });
    }
    if (
      rotation?.pair !== undefined &&
      rotation.clientId === clientId &&
      clock.nowSeconds() - rotation.rotatedAt! < reuseIntervalSeconds &&
      (await store.get(keys.refreshToken(rotation.refreshHash!)))
    ) {
      const pair = openForHolder(refreshToken, rotation.pair);
      if (pair !== undefined) return JSON.parse(pair) as IssuedTokens;
    }
    const reusedGrant = rotation?.grantId ?? (await store.get<string>(keys.usedRefreshToken(hash)));
    if (reusedGrant) return endForReuse(reusedGrant, clientId);
    throw new OAuthError('invalid_grant', 'unknown, expired or revoked refresh token');
  }

  /** The rotation record once its rotation finished (or vanished), waiting a bounded time for one in progress. */
  async function settledRotation(hash: string): Promise<RotationRecord | undefined> {
    const deadline = Date.now() + ROTATION_WAIT_MS;
    for (;;) {
      const rotation = await store.get<RotationRecord>(keys.refreshRotation(hash));
      if (rotation?.rotatedAt !== undefined || rotation === undefined || Date.now() >= deadline) return rotation;
      await sleep(ROTATION_POLL_MS);
    }
  }

  /**
   * A refresh renews the upstream grant too, so a user disabled upstream loses access (DESIGN §4),
   * and takes the user's identity from the refreshed id_token: a role or group removed upstream is
   * gone from the next access token (and the identity assertions built from it).
   */
  async function refreshUpstream(grant: GrantRecord): Promise<void> {
    if (!grant.upstream) return;
    const opened = sealer.open(grant.upstream);
    if (!opened) throw new UpstreamRefusedError('key_unavailable', 'upstream tokens cannot be decrypted');
    const current = JSON.parse(opened) as UpstreamTokens;
    if (!current.refreshToken) return;
    const renewed = await idp.refresh(current);
    grant.upstream = sealer.seal(JSON.stringify(renewed.tokens));
    grant.upstreamExpiresAt = renewed.tokens.expiresAt;
    if (renewed.identity) grant.user = renewed.identity;
  }

  /**
   * Resolves a bearer token to its record; undefined when unknown, expired or revoked.
   * Lookups are cached in memory for at most MAX_TOKEN_CACHE_MS, so a revocation made on
   * another replica takes effect here within that bound.
   */
  function validateAccessToken(token: string): AccessTokenRecord | undefined | Promise<AccessTokenRecord | undefined> {
    const now = nowMsOf(clock);
    const cached = cache.get(token);
    // A cache hit answers at once, without a promise (this runs on every MCP call).
    if (cached !== undefined && cached.until > now) {
      deps.onValidation?.('cached');
      return unexpired(cached.record);
    }
    if (!token.startsWith(ACCESS_TOKEN_PREFIX)) {
      deps.onValidation?.('invalid');
      return undefined;
    }
    return lookUpAccessToken(token, cached, now);
  }

  async function lookUpAccessToken(token: string, cached: CachedToken | undefined, now: number): Promise<AccessTokenRecord | undefined> {
    const hash = cached?.hash ?? sha256(token);
    const record = await store.get<AccessTokenRecord>(keys.accessToken(hash));
    deps.onValidation?.(record ? 'valid' : 'invalid');
    if (cached) forget(hash);
    if (record && cacheMs > 0) {
      cache.set(token, { record, until: now + cacheMs, hash });
      cachedByHash.set(hash, token);
    }
    return unexpired(record);
  }

  function unexpired(record: AccessTokenRecord | undefined): AccessTokenRecord | undefined {
    if (!record || record.expiresAt <= clock.nowSeconds()) return undefined;
    return record;
  }

  /**
   * RFC 7009 §2.1: revoking a refresh token revokes its grant; an access token only itself.
   * Returns what was revoked (undefined for an unknown token, answered 200 all the same, §2.2).
   */
  async function revokeToken(token: string, clientId: string): Promise<{ kind: 'access_token' | 'grant'; grantId: string } | undefined> {
    const hash = sha256(token);
    const access = await store.get<AccessTokenRecord>(keys.accessToken(hash));
    if (access) {
      if (access.clientId !== clientId) throw new OAuthError('unauthorized_client', 'token was issued to another client');
      forget(hash);
      await store.delete(keys.accessToken(hash));
      return { kind: 'access_token', grantId: access.grantId };
    }
    const refreshEntry = await store.get<{ grantId: string }>(keys.refreshToken(hash));
    if (!refreshEntry) return undefined; // §2.2: unknown tokens are answered 200 too.
    const grant = await store.get<GrantRecord>(keys.grant(refreshEntry.grantId));
    if (grant && grant.clientId !== clientId) throw new OAuthError('unauthorized_client', 'token was issued to another client');
    await revokeGrant(refreshEntry.grantId);
    return { kind: 'grant', grantId: refreshEntry.grantId };
  }

  async function revokeUserClientGrants(userKey: string, clientId: string): Promise<number> {
    let revoked = 0;
    for (const grantId of await store.members(keys.userGrants(userKey))) {
      const grant = await store.get<GrantRecord>(keys.grant(grantId));
      if (!grant) {
        await store.removeFromSet(keys.userGrants(userKey), grantId);
      } else if (grant.clientId === clientId) {
        await revokeGrant(grantId);
        revoked++;
      }
    }
    return revoked;
  }

  /** The user's live grants per client: how many, and since when the oldest (for /account). */
  async function liveGrantsByClient(userKey: string): Promise<Map<string, { count: number; since: number }>> {
    const byClient = new Map<string, { count: number; since: number }>();
    for (const grantId of await store.members(keys.userGrants(userKey))) {
      const grant = await store.get<GrantRecord>(keys.grant(grantId));
      if (!grant) continue;
      const seen = byClient.get(grant.clientId);
      byClient.set(grant.clientId, { count: (seen?.count ?? 0) + 1, since: Math.min(seen?.since ?? grant.createdAt, grant.createdAt) });
    }
    return byClient;
  }

  return { create, createAccessOnly, refresh, revokeGrant, revokeToken, revokeUserClientGrants, liveGrantsByClient, validateAccessToken };
}
export type Grants = ReturnType<typeof createGrants>;
