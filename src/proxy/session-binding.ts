import { sha256 } from '../oauth/secrets.ts';
import type { Store } from '../ports/store.ts';

/** A session id stays bound to its user this long after its last use (refreshed on every request). */
export const SESSION_BINDING_TTL_SECONDS = 24 * 3600;

/**
 * MCP security best practices §Session Hijacking: a session id is not authentication. A session id
 * is bound to the user whose request the backend issued it in answer to; anyone else presenting
 * it, and any id the backend never issued through us, is answered 404 as an unknown session. Kept
 * in the Store (`mcp-session:<resource>:<sha256(id)>` → userKey) so every replica agrees.
 */
export function createSessionBinding(store: Store) {
  const key = (resource: string, sessionId: string) => `mcp-session:${resource}:${sha256(sessionId)}`;
  return {
    /** True when a session id presented by a client is bound to this user (and keeps it alive). */
    async owns(resource: string, sessionId: string, userKey: string): Promise<boolean> {
      const k = key(resource, sessionId);
      if ((await store.get<string>(k)) !== userKey) return false;
      await store.set(k, userKey, SESSION_BINDING_TTL_SECONDS);
      return true;
    },
    /** Binds a session id the backend just issued; false when it is already another user's. */
    async bindIssued(resource: string, sessionId: string, userKey: string): Promise<boolean> {
      const k = key(resource, sessionId);
      if (await store.setIfAbsent(k, userKey, SESSION_BINDING_TTL_SECONDS)) return true;
      return (await store.get<string>(k)) === userKey;
    },
    async forget(resource: string, sessionId: string): Promise<void> {
      await store.delete(key(resource, sessionId));
    },
  };
}
export type SessionBinding = ReturnType<typeof createSessionBinding>;
