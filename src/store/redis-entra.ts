import { decodeJwt } from 'jose';
import type { RedisCredential } from './redis.ts';

/** Scope of a Microsoft Entra token for Azure Managed Redis and Azure Cache for Redis. */
const REDIS_ENTRA_SCOPE = 'https://redis.azure.com/.default';

export interface RedisEntraOptions {
  /** Client id of a user-assigned managed identity; without it, DefaultAzureCredential. */
  managedIdentityClientId?: string;
  /** The Redis user: the identity's object (principal) id; by default the token's `oid` claim. */
  username?: string;
}

/**
 * Redis credentials from Microsoft Entra: the user is the identity's object id, the password an
 * access token for REDIS_ENTRA_SCOPE (Azure "Use Microsoft Entra for cache authentication").
 * The Azure SDK caches the token and renews it before expiry; RedisStore re-AUTHs with each one.
 */
export function entraRedisCredential(options: RedisEntraOptions): () => Promise<RedisCredential> {
  let credential: { getToken(scope: string): Promise<{ token: string; expiresOnTimestamp: number } | null> } | undefined;
  return async () => {
    if (!credential) {
      const { DefaultAzureCredential, ManagedIdentityCredential } = await import('@azure/identity');
      credential = options.managedIdentityClientId
        ? new ManagedIdentityCredential({ clientId: options.managedIdentityClientId })
        : new DefaultAzureCredential();
    }
    const token = await credential.getToken(REDIS_ENTRA_SCOPE);
    if (!token) throw new Error(`no Microsoft Entra token for ${REDIS_ENTRA_SCOPE}`);
    const username = options.username ?? decodeJwt(token.token).oid;
    if (typeof username !== 'string') throw new Error('the Entra token for Redis has no oid claim: set store.entraAuth.username');
    return { username, password: token.token, expiresAt: Math.floor(token.expiresOnTimestamp / 1000) };
  };
}
