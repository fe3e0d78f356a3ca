/**
 * Who is calling: a person, from a validated upstream id_token or an enterprise IdP's ID-JAG; or a
 * workload (`kind: 'workload'`: a pre-registered client or an Entra app, no person behind it), then
 * `subject` is its client/app id and `roles` its app roles.
 */
export interface UserIdentity {
  /** Absent: a person. */
  kind?: 'workload';
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
  /**
   * The IdP left the groups out because there were too many (Entra's groups overage:
   * `_claim_names`/`_claim_sources` instead of `groups`): `groups` is then incomplete, not empty.
   */
  groupsOverage?: boolean;
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
  /**
   * Scopes asked for beyond the sign-in's own, after them (Entra issues the token for the first
   * resource and records consent for all): a backend's downstream scope the user must consent to.
   */
  extraScopes?: readonly string[];
  /** OIDC Core §5.5 `claims` request parameter: Entra's claims challenge to satisfy. */
  claims?: string;
}

export interface UpstreamCallback {
  /** The full URL the IdP redirected the browser to (our /callback with its query). */
  callbackUrl: URL;
  state: string;
  nonce: string;
  codeVerifier: string;
}

export interface UpstreamRefresh {
  tokens: UpstreamTokens;
  /** Who the refreshed id_token says the user is now (roles and groups may have changed). */
  identity?: UserIdentity;
}

/** What the upstream said about a failed request, for the logs (Entra's error JSON). */
export interface UpstreamErrorDetails {
  status?: number;
  error?: string;
  /** Entra: the first of `error_codes` (the AADSTS number). */
  errorCode?: number;
  suberror?: string;
  /**
   * Entra's claims challenge (a Conditional Access policy, e.g. MFA, on interaction_required): the
   * JSON the interactive authorize request must carry as `claims` (claims-challenge.md).
   */
  claims?: string;
  traceId?: string;
  correlationId?: string;
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
  /**
   * Exchanges the code in the callback; validates the id_token's iss, aud, nonce, exp/iat. Its
   * signature is not checked: it came straight from the token endpoint over TLS (OIDC Core §3.1.3.7).
   */
  completeSignIn(callback: UpstreamCallback): Promise<UpstreamSignIn>;
  /**
   * Refreshes the upstream grant; `identity` when a new id_token came back (validated like the first
   * one, same subject). Throws UpstreamRefusedError when the user must sign in again,
   * UpstreamUnavailableError otherwise.
   */
  refresh(tokens: UpstreamTokens): Promise<UpstreamRefresh>;
  /** Resolves when the IdP's metadata is reachable (used by /readyz). */
  ping(): Promise<void>;
  /**
   * A token for another resource from the user's upstream grant (backends' downstream tokens):
   * Entra's refresh token redeemed for other scopes, or on-behalf-of the user's access token.
   * Throws UpstreamRefusedError when the user must act (consent, MFA), UpstreamUnavailableError
   * otherwise. Absent for IdPs that cannot.
   */
  downstreamToken?(tokens: UpstreamTokens, request: DownstreamTokenRequest): Promise<DownstreamToken>;
}

/** How a downstream token is minted, and for which scopes (of one resource). */
export interface DownstreamTokenRequest {
  via: 'refresh' | 'on-behalf-of';
  scopes: readonly string[];
}

/** A token the gateway minted for a backend (never the client's, never the sign-in's). */
export interface DownstreamToken {
  accessToken: string;
  /** Epoch seconds. */
  expiresAt: number;
  /** What the IdP says the token carries. */
  scope?: string;
}

/** The user must act again (invalid_grant, user disabled, consent revoked): our grant ends. */
export class UpstreamRefusedError extends Error {
  readonly upstreamError: string;
  readonly details?: UpstreamErrorDetails;
  constructor(upstreamError: string, message: string, options?: { cause?: unknown; details?: UpstreamErrorDetails }) {
    super(message, options);
    this.name = 'UpstreamRefusedError';
    this.upstreamError = upstreamError;
    this.details = options?.details;
  }
}

/**
 * Not the user's doing: the upstream is unreachable, throttling or failing, or refuses the gateway's
 * own credential or configuration (`configurationFault`: an operator must act). Grants are kept;
 * the client gets temporarily_unavailable.
 */
export class UpstreamUnavailableError extends Error {
  readonly configurationFault: boolean;
  readonly details?: UpstreamErrorDetails;
  constructor(message: string, options?: { cause?: unknown; details?: UpstreamErrorDetails; configurationFault?: boolean }) {
    super(message, options);
    this.name = 'UpstreamUnavailableError';
    this.configurationFault = options?.configurationFault ?? false;
    this.details = options?.details;
  }
}
