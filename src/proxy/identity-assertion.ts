import { createPrivateKey, createPublicKey } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, type JWK, SignJWT } from 'jose';
import { type BoundedCache, createBoundedCache } from '../ports/bounded-cache.ts';
import type { Clock } from '../ports/clock.ts';
import type { AccessTokenRecord } from '../ports/records.ts';

/** Cached assertions are replaced this long before they expire (or at half their life if shorter). */
const REUSE_MARGIN_SECONDS = 60;
/** Bound on cached assertions per backend; the oldest go first. */
const MAX_CACHED_ASSERTIONS = 10_000;

interface CachedAssertion {
  assertion: string;
  reuseUntil: number;
}

export interface IdentityAssertions {
  /** RFC 7517 JWK Set with the one public key, served at /.well-known/jwks.json. */
  jwks: { keys: JWK[] };
  /**
   * A signed assertion of the token's user for one backend, reused until near its expiry (a
   * reused one at once, a new one by a promise). With `exchangeable`, it names the grant (`sid`)
   * so the backend can exchange it at /token (RFC 8693).
   */
  assertionFor(token: string, record: AccessTokenRecord, audience: string, ttlSeconds: number, exchangeable?: boolean): string | Promise<string>;
}

/**
 * Short-lived ES256 JWTs (RFC 7519, RFC 7518 §3.4) telling a backend who is calling:
 * iss = the gateway, aud = the backend's resource URL, sub/oid/tid/name/email/preferred_username/
 * roles/groups/client_id from the validated grant (renewed from the IdP's id_token at each refresh),
 * exp = now + ttl (never past the access token). `email` is as the IdP gave it, unverified (Entra:
 * mutable, never authorise on it). When the IdP had too many groups to list (Entra's overage),
 * `groups` is left out and `groups_overage: true` is set, so a check on groups fails closed.
 * A workload caller (client_credentials, an Entra app) has `idtyp: "app"` and `sub` = its client or
 * app id. For a backend that pulls downstream tokens, `sid` is the gateway grant it came from
 * (src/oauth/token-exchange.ts). The key id is the RFC 7638 JWK thumbprint so rotation needs no bookkeeping.
 */
export async function createIdentityAssertions(deps: {
  signingKeyPem: string;
  issuer: string;
  clock: Clock;
}): Promise<IdentityAssertions> {
  // A P-256 PEM key: config/schema.ts checks secrets.signingKey.
  const privateKey = createPrivateKey(deps.signingKeyPem);
  const publicJwk = await exportJWK(createPublicKey(privateKey));
  const kid = await calculateJwkThumbprint(publicJwk);
  const jwks = { keys: [{ ...publicJwk, kid, alg: 'ES256', use: 'sig' }] };
  // One cache per audience (a backend), keyed by the token itself (in process memory only): a hit
  // costs no hash, no key built and no promise (benchmark 1). Audiences are the configured backends.
  const caches = new Map<string, BoundedCache<string, CachedAssertion>>();

  function assertionFor(token: string, record: AccessTokenRecord, audience: string, ttlSeconds: number, exchangeable?: boolean): string | Promise<string> {
    const now = deps.clock.nowSeconds();
    let cache = caches.get(audience);
    if (cache === undefined) {
      cache = createBoundedCache(MAX_CACHED_ASSERTIONS);
      caches.set(audience, cache);
    }
    const cached = cache.get(token);
    if (cached && now < cached.reuseUntil) return cached.assertion;
    return sign(cache, token, record, audience, ttlSeconds, now, exchangeable);
  }

  async function sign(
    cache: BoundedCache<string, CachedAssertion>,
    token: string,
    record: AccessTokenRecord,
    audience: string,
    ttlSeconds: number,
    now: number,
    exchangeable?: boolean,
  ): Promise<string> {
    const expiresAt = Math.max(now + 1, Math.min(now + ttlSeconds, record.expiresAt));
    const user = record.user;
    const claims: Record<string, unknown> = {
      oid: user.objectId,
      tid: user.tenantId,
      name: user.name,
      email: user.email,
      preferred_username: user.preferredUsername,
      roles: user.roles,
      groups: user.groupsOverage ? undefined : user.groups,
      groups_overage: user.groupsOverage ? true : undefined,
      client_id: record.clientId,
      // A workload (no person): `sub` is its client/app id; Entra's claim name for app-only tokens.
      idtyp: user.kind === 'workload' ? 'app' : undefined,
      // The gateway grant (sign-in session, OIDC Core's `sid`) a token exchange draws on.
      sid: exchangeable ? record.grantId : undefined,
    };
    for (const [name, value] of Object.entries(claims)) if (value === undefined) delete claims[name];
    const assertion = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
      .setIssuer(deps.issuer)
      .setAudience(audience)
      .setSubject(user.subject)
      .setIssuedAt(now)
      .setExpirationTime(expiresAt)
      .sign(privateKey);
    const margin = Math.min(REUSE_MARGIN_SECONDS, Math.floor((expiresAt - now) / 2));
    cache.set(token, { assertion, reuseUntil: expiresAt - margin });
    return assertion;
  }

  return { jwks, assertionFor };
}
