/** Who signed in, taken only from a validated upstream id_token. */
export interface UserIdentity {
  /** Upstream issuer (for Entra: https://login.microsoftonline.com/{tid}/v2.0). */
  issuer: string;
  /** Upstream subject (`sub`). */
  subject: string;
  /** Entra object id (`oid`) when present. */
  objectId?: string;
  /** Entra tenant id (`tid`) when present. */
  tenantId?: string;
  name?: string;
  email?: string;
  preferredUsername?: string;
  roles: string[];
  groups: string[];
}

/** Upstream tokens; the gateway keeps them encrypted and never hands them to clients or backends. */
export interface UpstreamTokens {
  accessToken?: string;
  refreshToken?: string;
  idToken?: string;
  /** Epoch seconds. */
  expiresAt?: number;
  /** Scopes granted upstream (space separated), replayed on refresh. */
  scope?: string;
}

export interface UpstreamAuthorizationRequest {
  state: string;
  nonce: string;
  /** The gateway's own PKCE verifier for the upstream leg (the challenge is derived from it). */
  codeVerifier: string;
  /** `select_account` or `login` when the client asked for it; never `consent` (DESIGN §6). */
  prompt?: 'login' | 'select_account';
  loginHint?: string;
}

export interface UpstreamCallback {
  /** The full URL the IdP redirected the browser to (our /callback with its query). */
  callbackUrl: URL;
  state: string;
  nonce: string;
  codeVerifier: string;
}

export interface UpstreamSignIn {
  identity: UserIdentity;
  tokens: UpstreamTokens;
}

/** The upstream identity provider adapter: Entra ID, generic OIDC, or the dev IdP. */
export interface UpstreamIdp {
  readonly kind: 'entra' | 'oidc' | 'dev';
  /** URL to send the browser to. */
  authorizationUrl(request: UpstreamAuthorizationRequest): Promise<URL>;
  /** Exchanges the code in the callback; validates the id_token (signature, iss, aud, nonce, exp). */
  completeSignIn(callback: UpstreamCallback): Promise<UpstreamSignIn>;
  /** Refreshes the upstream grant with its stored scopes; throws UpstreamRefusedError when refused. */
  refresh(tokens: UpstreamTokens): Promise<UpstreamTokens>;
  /** Resolves when the IdP's metadata is reachable (used by /readyz). */
  ping(): Promise<void>;
}

/** The upstream refused (invalid_grant, user disabled, consent revoked): our grant ends. */
export class UpstreamRefusedError extends Error {
  readonly upstreamError: string;
  constructor(upstreamError: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamRefusedError';
    this.upstreamError = upstreamError;
  }
}

/** The upstream could not be reached or answered garbage: temporarily_unavailable. */
export class UpstreamUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamUnavailableError';
  }
}
