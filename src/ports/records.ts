import type { UpstreamTokens, UserIdentity } from './idp.ts';

/** A registered OAuth client: from DCR (RFC 7591) or a Client ID Metadata Document. */
export interface ClientRecord {
  clientId: string;
  /** 'dcr' clients are stored durably; 'cimd' ones are cached copies of their document; 'config' ones live in the config. */
  kind: 'dcr' | 'cimd' | 'config';
  clientName?: string;
  clientUri?: string;
  logoUri?: string;
  redirectUris: string[];
  grantTypes: string[];
  responseTypes: string[];
  tokenEndpointAuthMethod: 'none' | 'client_secret_post' | 'client_secret_basic' | 'private_key_jwt';
  /** SHA-256 (base64url) of the client secret for confidential DCR clients. */
  clientSecretHash?: string;
  scope?: string;
  createdAt: number;
  /** DCR clients: the record ends here unless used (or given a grant) before. */
  expiresAt?: number;
}

/** Encrypted upstream tokens (AES-256-GCM), with the id of the key that sealed them. */
export interface SealedSecret {
  keyId: string;
  /** base64url of iv(12) | ciphertext | tag(16). */
  sealed: string;
}

/** One user's authorization of one client for one resource; refresh rotates within it. */
export interface GrantRecord {
  grantId: string;
  user: UserIdentity;
  /** Stable user key: `${issuer}|${subject}` (for Entra `${tid}|${oid}`). */
  userKey: string;
  clientId: string;
  scopes: string[];
  /** The protected resource (audience), e.g. http://localhost:8080/mcp. */
  resource: string;
  createdAt: number;
  /** The grant (and its refresh token) ends at this time. */
  expiresAt: number;
  /** SHA-256 of the current refresh token; an older one presented again means theft. */
  refreshTokenHash?: string;
  upstream?: SealedSecret;
  /** Upstream access-token expiry (epoch seconds), for refresh decisions. */
  upstreamExpiresAt?: number;
}

/**
 * What an access token resolves to; kept under the token's SHA-256. A view of its grant: `scopes`
 * may be narrower (RFC 6749 §6) and `expiresAt` is the token's own.
 */
export type AccessTokenRecord = Pick<GrantRecord, 'grantId' | 'clientId' | 'userKey' | 'user' | 'scopes' | 'resource' | 'expiresAt'>;

/** A grant's user and sealed upstream tokens, as a sign-in yields them. */
export type SignedInUser = Pick<GrantRecord, 'user' | 'upstream' | 'upstreamExpiresAt'>;

export type { UpstreamTokens, UserIdentity };
