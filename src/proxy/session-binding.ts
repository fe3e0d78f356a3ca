import { sha256 } from '../oauth/secrets.ts';
import type { Store } from '../ports/store.ts';

/** A session id stays bound to its user this long after its last use (refreshed on every request). */
export const SESSION_BINDING_TTL_SECONDS = 24 * 3600;

/**
 * MCP security best practices §Session Hijacking: a session id is not authentication. The first
 * user seen with an `Mcp-Session-Id` owns it; anyone else presenting it is answered 404, as for
 * an unknown session. Kept in the Store (`mcp-session:<resource>:<sha256(id)>` → userKey) so
 * every replica agrees.
 */
export function createSessionBinding(store: Store) {
  const key = (resource: string, sessionId: string) => `mcp-session:${resource}:${sha256(sessionId)}`;
  return {
    /** True when the session is (now) bound to userKey; false when another user owns it. */
    async claim(resource: string, sessionId: string, userKey: string): Promise<boolean> {
      const k = key(resource, sessionId);
      const owner = await store.get<string>(k);
      if (owner === undefined) {
        if (await store.setIfAbsent(k, userKey, SESSION_BINDING_TTL_SECONDS)) return true;
        return (await store.get<string>(k)) === userKey;
      }
      if (owner !== userKey) return false;
      await store.set(k, userKey, SESSION_BINDING_TTL_SECONDS);
      return true;
    },
    async forget(resource: string, sessionId: string): Promise<void> {
      await store.delete(key(resource, sessionId));
    },
  };
}
export type SessionBinding = ReturnType<typeof createSessionBinding>;
