import type { Logger } from 'pino';
import type { Audit } from '../audit/audit.ts';
import type { Config } from '../config/load.ts';
import type { Clock } from '../ports/clock.ts';
import type { UpstreamIdp } from '../ports/idp.ts';
import type { GrantRecord, SignedInUser } from '../ports/records.ts';
import type { Store } from '../ports/store.ts';
import type { Clients } from './clients.ts';
import type { ConfiguredClient } from './configured-clients.ts';
import type { Grants } from './grants.ts';
import type { ProtectedResource } from './resources.ts';
import type { Sealer, Signer } from './secrets.ts';

/** Everything the authorization-server endpoints need, built once in main.ts. */
export interface AuthServerContext {
  config: Config;
  /** Our issuer identifier (RFC 8414 §2): the public URL's origin, no trailing slash. */
  issuer: string;
  store: Store;
  clock: Clock;
  idp: UpstreamIdp;
  clients: Clients;
  /** Pre-registered clients (config `clients`), by client_id. */
  configuredClients: ReadonlyMap<string, ConfiguredClient>;
  grants: Grants;
  sealer: Sealer;
  signer: Signer;
  resources: ProtectedResource[];
  logger: Logger;
  audit: Audit;
}

/** A pending /authorize (or /account sign-in, or downstream consent) between the browser's hops; single use. */
export interface AuthorizationRequest {
  id: string;
  purpose: 'authorize' | 'account' | 'downstream-consent';
  /** purpose `downstream-consent`: the grant whose user must consent to `scope` upstream. */
  downstream?: { grantId: string; scope: string; claims?: string };
  clientId?: string;
  redirectUri?: string;
  state?: string;
  codeChallenge?: string;
  scopes: string[];
  resource?: string;
  prompt?: 'login' | 'select_account';
  loginHint?: string;
  /**
   * Set after sign-in when this user has no stored approval covering the request: the consent
   * page is shown again, naming the signed-in user (a pre-sign-in approval may come from another
   * browser whose cookies were planted in this one).
   */
  signIn?: SignedInUser;
  createdAt: number;
}

/** Upstream `state` record: single use, ≤ 10 minutes (DESIGN §4). */
export interface UpstreamStateRecord {
  requestId: string;
  codeVerifier: string;
  nonce: string;
  /** SHA-256 of the browser id cookie of the browser that was sent upstream. */
  browserHash: string;
}

/** Authorization code record, under the code's SHA-256: the grant it becomes, and the code's own checks. */
export interface CodeRecord
  extends Pick<GrantRecord, 'grantId' | 'clientId' | 'resource' | 'scopes' | 'user' | 'userKey' | 'upstream' | 'upstreamExpiresAt'> {
  redirectUri: string;
  codeChallenge: string;
  issuedAt: number;
  /** The code's expiry. */
  expiresAt: number;
}

/** Remembered approval of one client by one user (shown and revocable at /account). */
export interface ConsentRecord {
  clientId: string;
  clientName: string;
  redirectHost: string;
  /** Approved scopes per resource: an approval never covers another resource or more scopes. */
  resources: Record<string, string[]>;
  approvedAt: number;
  lastUsedAt?: number;
}

export const AUTHORIZATION_REQUEST_TTL_SECONDS = 600;
export const ACCOUNT_SESSION_TTL_SECONDS = 8 * 3600;
export const CONSENT_COOKIE_TTL_SECONDS = 90 * 86400;
