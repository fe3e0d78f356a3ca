import { MAX_TOKEN_CACHE_MS } from '../oauth/grants.ts';
import { keys } from '../oauth/keys.ts';
import { type BoundedCache, createBoundedCache } from '../ports/bounded-cache.ts';
import { type Clock, nowMsOf } from '../ports/clock.ts';
import type { Store } from '../ports/store.ts';

/** A session id stays bound to its user this long after its last use. */
const SESSION_BINDING_TTL_SECONDS = 24 * 3600;
/** The binding's expiry is pushed back at most this often per replica (not on every call). */
const SESSION_BINDING_REFRESH_MS = 3600 * 1000;
/** Bound on cached bindings per backend; the oldest go first. */
const MAX_CACHED_SESSIONS = 10_000;

interface CachedBinding {
  userKey: string;
  checkedUntil: number;
  refreshedAt: number;
}

/**
 * MCP security best practices §Session Hijacking: a session id is not authentication. A session id
 * is bound to the user whose request the backend issued it in answer to; anyone else presenting
 * it, and any id the backend never issued through us, is answered 404 as an unknown session. Kept
 * in the Store (`mcp-session:<resource>:<sha256(id)>` → userKey) so every replica agrees.
 *
 * A binding never changes hands (only ends), so a replica keeps what it read for at most 1 s and
 * refreshes the Store's expiry at most hourly: a tool call in a session costs no Store round trip
 * most of the time (Redis: two per call before; SQLite: a write per call).
 */
export function createSessionBinding(store: Store, clock: Clock, options: { cacheMs?: number | undefined } = {}) {
  // By default a replica trusts a binding it read as long as a token lookup (`tokens.cacheMs`):
  // a session ended on another replica is refused within that bound.
  const verdictMs = options.cacheMs ?? MAX_TOKEN_CACHE_MS;
  // One cache per resource (a backend), keyed by the id itself (process memory only), so a hit
  // costs no hash and no key built (benchmark 1). Resources are the configured backends.
  const caches = new Map<string, BoundedCache<string, CachedBinding>>();
  function cacheOf(resource: string): BoundedCache<string, CachedBinding> {
    let cache = caches.get(resource);
    if (cache === undefined) {
      cache = createBoundedCache(MAX_CACHED_SESSIONS);
      caches.set(resource, cache);
    }
    return cache;
  }
  async function ownsPerStore(
    cache: BoundedCache<string, CachedBinding>,
    resource: string,
    sessionId: string,
    userKey: string,
    cached: CachedBinding | undefined,
    now: number,
  ): Promise<boolean> {
    const k = keys.mcpSession(resource, sessionId);
    const owner = await store.get<string>(k);
    if (owner === undefined) {
      cache.delete(sessionId);
      return false;
    }
    let refreshedAt = cached?.userKey === owner ? cached.refreshedAt : 0;
    if (owner === userKey && now - refreshedAt >= SESSION_BINDING_REFRESH_MS) {
      await store.set(k, owner, SESSION_BINDING_TTL_SECONDS);
      refreshedAt = now;
    }
    cache.set(sessionId, { userKey: owner, checkedUntil: now + verdictMs, refreshedAt });
    return owner === userKey;
  }
  return {
    /** True when a session id presented by a client is bound to this user (and keeps it alive). */
    owns(resource: string, sessionId: string, userKey: string): boolean | Promise<boolean> {
      const now = nowMsOf(clock);
      const cache = cacheOf(resource);
      const cached = cache.get(sessionId);
      // Answered from memory without a promise (this runs on every call in a session).
      if (cached !== undefined && cached.checkedUntil > now) return cached.userKey === userKey;
      return ownsPerStore(cache, resource, sessionId, userKey, cached, now);
    },
    /** Binds a session id the backend just issued; false when it is already another user's. */
    async bindIssued(resource: string, sessionId: string, userKey: string): Promise<boolean> {
      const k = keys.mcpSession(resource, sessionId);
      if (await store.setIfAbsent(k, userKey, SESSION_BINDING_TTL_SECONDS)) {
        const now = nowMsOf(clock);
        cacheOf(resource).set(sessionId, { userKey, checkedUntil: now + verdictMs, refreshedAt: now });
        return true;
      }
      return (await store.get<string>(k)) === userKey;
    },
    async forget(resource: string, sessionId: string): Promise<void> {
      cacheOf(resource).delete(sessionId);
      await store.delete(keys.mcpSession(resource, sessionId));
    },
  };
}
export type SessionBinding = ReturnType<typeof createSessionBinding>;
