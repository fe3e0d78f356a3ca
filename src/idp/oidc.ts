import { createPrivateKey, X509Certificate } from 'node:crypto';
import { decodeJwt, importPKCS8 } from 'jose';
import * as client from 'openid-client';
import type { Logger } from 'pino';
import { isLoopbackHost, type OidcIdpConfig } from '../config/schema.ts';
import { type Clock, systemClock } from '../ports/clock.ts';
import {
  type DownstreamToken,
  type DownstreamTokenRequest,
  type UpstreamAuthorizationRequest,
  type UpstreamErrorDetails,
  type UpstreamIdp,
  type UpstreamRefresh,
  UpstreamRefusedError,
  type UpstreamSignIn,
  type UpstreamTokens,
  UpstreamUnavailableError,
  type UserIdentity,
} from '../ports/idp.ts';

const DISCOVERY_TIMEOUT_SECONDS = 10;
/** RFC 7523 §2.1 grant type; Entra's on-behalf-of request uses it. */
const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const OIDC_SCOPES = new Set(['openid', 'profile', 'email', 'offline_access']);
/** A stored user token closer than this to its expiry is not used as an on-behalf-of assertion. */
const ASSERTION_MARGIN_SECONDS = 60;
/** RFC 6749 §5.1: `expires_in` is only RECOMMENDED; without it a downstream token is trusted this long. */
const DOWNSTREAM_DEFAULT_LIFETIME_SECONDS = 300;
/**
 * Tolerated clock difference with the IdP on id_token `iat`/`nbf`/`exp`: a gateway clock a little
 * behind the IdP's must not end every grant at its next refresh.
 */
const CLOCK_TOLERANCE_SECONDS = 300;

/** Where the adapter reports what the IdP answered (the gateway's pino logger). */
export type UpstreamLogger = Pick<Logger, 'error' | 'warn' | 'info'>;

export interface OidcIdpOptions {
  /** The gateway's /callback URL, registered at the IdP. */
  redirectUri: string;
  /** `dev` when this adapter talks to the embedded dev IdP. */
  kind?: 'oidc' | 'dev';
  /** Allow http:// issuers, on loopback only (the dev IdP). */
  allowInsecureHttp?: boolean;
  logger?: UpstreamLogger;
  /** Dates the upstream tokens' expiry (default: the system's). */
  clock?: Clock;
}

/** Any OpenID Provider, found by discovery, with a client secret or private_key_jwt. */
export async function createOidcIdp(config: OidcIdpConfig, options: OidcIdpOptions): Promise<UpstreamIdp> {
  const issuer = new URL(config.issuer);
  const clientAuth = config.privateKeyJwt
    ? await privateKeyJwtAuth(config.privateKeyJwt)
    : client.ClientSecretPost(config.clientSecret);
  return createOpenIdIdp({
    kind: options.kind ?? 'oidc',
    server: issuer,
    clientId: config.clientId,
    clientAuth,
    redirectUri: options.redirectUri,
    scopes: config.scopes,
    allowInsecureHttp: insecureAllowed(issuer, options.allowInsecureHttp),
    rolesClaim: config.rolesClaim,
    groupsClaim: config.groupsClaim,
    // RFC 6749 §6: without a stored scope, omitting `scope` means "as originally granted".
    refreshScope: (stored) => stored,
    // RFC 6749 §5.2: the client may not use this grant type — a registration fault, not the user's.
    userMustActErrors: USER_MUST_ACT,
    ...(options.logger ? { logger: options.logger } : {}),
    clock: options.clock ?? systemClock,
  });
}

/** What differs between the generic adapter and Entra's; everything else is shared below. */
export interface OpenIdIdpSettings {
  kind: UpstreamIdp['kind'];
  /** Discovery base (issuer) URL. */
  server: URL;
  clientId: string;
  clientAuth: client.ClientAuth;
  redirectUri: string;
  scopes: string[];
  allowInsecureHttp: boolean;
  fetch?: client.CustomFetch;
  rolesClaim: string;
  groupsClaim: string;
  clock: Clock;
  /** The `scope` of a refresh request, from the scope stored with the tokens. */
  refreshScope(stored: string | undefined): string | undefined;
  /** Extra checks on validated id_token claims; throws UpstreamRefusedError. */
  checkClaims?(claims: client.IDToken): void;
  /** OAuth `error` values of a token response that mean the user must sign in again (the grant ends). */
  userMustActErrors: ReadonlySet<string>;
  logger?: UpstreamLogger;
}

export function createOpenIdIdp(settings: OpenIdIdpSettings): UpstreamIdp {
  let configuration: Promise<client.Configuration> | undefined;

  const discover = () =>
    client
      .discovery(settings.server, settings.clientId, { [client.clockTolerance]: CLOCK_TOLERANCE_SECONDS }, settings.clientAuth, {
        timeout: DISCOVERY_TIMEOUT_SECONDS,
        ...(settings.allowInsecureHttp ? { execute: [client.allowInsecureRequests] } : {}),
        ...(settings.fetch ? { [client.customFetch]: settings.fetch } : {}),
      })
      .catch(async (error: unknown) => {
        throw await classified(error, `discovery of ${settings.server.href} failed`);
      });

  const classified = async (error: unknown, context: string) => {
    const upstreamError = toUpstreamError(error, context, settings.userMustActErrors, await errorResponseBody(error));
    logUpstreamError(settings.logger, upstreamError);
    return upstreamError;
  };

  // Discovery is lazy and retried on the next call after a failure: a down IdP at start must not
  // stop the gateway (readiness reports it instead).
  const getConfiguration = (): Promise<client.Configuration> => {
    configuration ??= discover().catch((error: unknown) => {
      configuration = undefined;
      throw error;
    });
    return configuration;
  };

  /**
   * The user's access token for the gateway's own API (the sign-in's resource scopes), the OBO
   * assertion: the stored one while it lives, else a fresh one redeemed with the refresh token.
   */
  const userAssertion = async (config: client.Configuration, tokens: UpstreamTokens): Promise<string> => {
    const now = settings.clock.nowSeconds();
    if (tokens.accessToken && tokens.expiresAt !== undefined && tokens.expiresAt > now + ASSERTION_MARGIN_SECONDS) return tokens.accessToken;
    const ownScopes = settings.scopes.filter((s) => !OIDC_SCOPES.has(s));
    if (!tokens.refreshToken || ownScopes.length === 0) {
      throw new UpstreamUnavailableError('on-behalf-of needs the user\'s token for the gateway\'s own API: add its scope to the upstream scopes', {
        configurationFault: true,
      });
    }
    const fresh = await client.refreshTokenGrant(config, tokens.refreshToken, { scope: ownScopes.join(' ') });
    return fresh.access_token;
  };

  return {
    kind: settings.kind,

    async authorizationUrl(request: UpstreamAuthorizationRequest): Promise<URL> {
      const config = await getConfiguration();
      const parameters: Record<string, string> = {
        redirect_uri: settings.redirectUri,
        scope: [...settings.scopes, ...(request.extraScopes ?? []).filter((s) => !settings.scopes.includes(s))].join(' '),
        state: request.state,
        nonce: request.nonce,
        // RFC 7636 / OAuth 2.1: the gateway's own PKCE for the upstream leg, S256 only.
        code_challenge: await client.calculatePKCECodeChallenge(request.codeVerifier),
        code_challenge_method: 'S256',
      };
      // The port carries only `login` or `select_account`: /authorize drops any other (DESIGN §6, never `consent`).
      const prompt = request.prompt;
      if (prompt) parameters['prompt'] = prompt;
      if (request.claims) parameters['claims'] = request.claims;
      // Asking the user to pick an account and naming one contradict each other; Entra documents
      // that login_hint must not be combined with prompt=select_account (v2-protocols-oidc.md).
      if (request.loginHint && prompt !== 'select_account') parameters['login_hint'] = request.loginHint;
      return client.buildAuthorizationUrl(config, parameters);
    },

    async completeSignIn(callback): Promise<UpstreamSignIn> {
      const config = await getConfiguration();
      let response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
      try {
        // openid-client checks state, the code exchange (PKCE), and the id_token's iss, aud, nonce,
        // exp/iat. Not its signature: the id_token came from the token endpoint over TLS, which OIDC
        // Core §3.1.3.7 (item 6) accepts in place of it for the code flow.
        response = await client.authorizationCodeGrant(config, callback.callbackUrl, {
          pkceCodeVerifier: callback.codeVerifier,
          expectedState: callback.state,
          expectedNonce: callback.nonce,
          idTokenExpected: true,
        });
      } catch (error) {
        throw await classified(error, 'upstream sign-in failed');
      }
      const claims = response.claims();
      if (!claims) throw new UpstreamRefusedError('invalid_response', 'the upstream returned no id_token');
      settings.checkClaims?.(claims);
      return { identity: identityFrom(claims, settings), tokens: tokensFrom(response, settings.clock) };
    },

    async refresh(tokens: UpstreamTokens): Promise<UpstreamRefresh> {
      if (!tokens.refreshToken) throw new UpstreamRefusedError('invalid_grant', 'no upstream refresh token');
      const config = await getConfiguration();
      const scope = settings.refreshScope(tokens.scope);
      let response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
      try {
        response = await client.refreshTokenGrant(config, tokens.refreshToken, scope ? { scope } : undefined);
      } catch (error) {
        throw await classified(error, 'upstream refresh failed');
      }
      const claims = response.claims();
      if (claims) {
        // OIDC Core §12.2: a refreshed id_token must be about the same End-User.
        const original = tokens.idToken ? decodeJwt(tokens.idToken).sub : undefined;
        if (original !== undefined && claims.sub !== original) {
          throw new UpstreamRefusedError('invalid_grant', 'the refreshed id_token is for another subject');
        }
        settings.checkClaims?.(claims);
      }
      const fresh = tokensFrom(response, settings.clock);
      return {
        tokens: {
          ...fresh,
          // An IdP may keep the refresh token (no rotation) or leave out the id_token and scope.
          refreshToken: fresh.refreshToken ?? tokens.refreshToken,
          idToken: fresh.idToken ?? tokens.idToken,
          scope: fresh.scope ?? tokens.scope,
        },
        ...(claims ? { identity: identityFrom(claims, settings) } : {}),
      };
    },

    async downstreamToken(tokens: UpstreamTokens, request: DownstreamTokenRequest): Promise<DownstreamToken> {
      const config = await getConfiguration();
      const scope = request.scopes.join(' ');
      let response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
      try {
        if (request.via === 'refresh') {
          if (!tokens.refreshToken) throw new UpstreamRefusedError('invalid_grant', 'no upstream refresh token');
          // Entra's refresh tokens are multi-resource: the same one redeems for another resource's
          // scopes (v2-oauth2-auth-code-flow.md §Refresh the access token). No `openid`: no id_token.
          response = await client.refreshTokenGrant(config, tokens.refreshToken, { scope });
        } else {
          // Entra on-behalf-of (v2-oauth2-on-behalf-of-flow.md): the user's access token for the
          // gateway's own API is the assertion, with requested_token_use=on_behalf_of.
          const assertion = await userAssertion(config, tokens);
          response = await client.genericGrantRequest(config, JWT_BEARER_GRANT, {
            assertion,
            requested_token_use: 'on_behalf_of',
            scope,
          });
        }
      } catch (error) {
        throw await classified(error, `upstream ${request.via} for ${scope} failed`);
      }
      const expiresIn = response.expiresIn() ?? DOWNSTREAM_DEFAULT_LIFETIME_SECONDS;
      return { accessToken: response.access_token, expiresAt: settings.clock.nowSeconds() + expiresIn, ...(response.scope ? { scope: response.scope } : {}) };
    },

    async ping(): Promise<void> {
      // A fresh fetch of the metadata each time: readiness must reflect the IdP now.
      const config = await discover();
      configuration ??= Promise.resolve(config);
    },
  };
}

function identityFrom(claims: client.IDToken, settings: OpenIdIdpSettings): UserIdentity {
  const overage = hasDistributedClaim(claims, settings.groupsClaim);
  return {
    issuer: claims.iss,
    subject: claims.sub,
    objectId: stringClaim(claims['oid']),
    tenantId: stringClaim(claims['tid']),
    name: stringClaim(claims['name']),
    email: stringClaim(claims['email']),
    preferredUsername: stringClaim(claims['preferred_username']),
    roles: stringsClaim(claims[settings.rolesClaim]),
    groups: stringsClaim(claims[settings.groupsClaim]),
    ...(overage ? { groupsOverage: true } : {}),
  };
}

/**
 * OIDC Core §5.6.2: a claim named in `_claim_names` is held elsewhere (Entra's groups overage, more
 * groups than fit in a token); the token's own value of it is then not the whole answer. Entra's
 * implicit-flow tokens say `hasgroups: true` instead (id-token-claims-reference.md).
 */
function hasDistributedClaim(claims: client.IDToken, name: string): boolean {
  const names = claims['_claim_names'];
  if (typeof names === 'object' && names !== null && Object.hasOwn(names, name)) return true;
  return name === 'groups' && claims['hasgroups'] === true;
}

function tokensFrom(response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers, clock: Clock): UpstreamTokens {
  const expiresIn = response.expiresIn();
  return {
    accessToken: response.access_token,
    refreshToken: response.refresh_token,
    idToken: response.id_token,
    expiresAt: expiresIn === undefined ? undefined : clock.nowSeconds() + expiresIn,
    scope: response.scope,
  };
}

function stringClaim(value: unknown): string | undefined {
  return typeof value === 'string' && value ? value : undefined;
}

function stringsClaim(value: unknown): string[] {
  if (typeof value === 'string') return value.split(' ').filter(Boolean);
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/**
 * How a token endpoint's OAuth `error` is read (RFC 6749 §5.2, Entra's error reference). Only errors
 * that need the user end a grant; the gateway's own credential or configuration being refused is an
 * operator's fault and must never sign every user out.
 */
export const USER_MUST_ACT: ReadonlySet<string> = new Set(['invalid_grant', 'interaction_required', 'consent_required', 'login_required', 'access_denied']);
const UNAVAILABLE = new Set(['temporarily_unavailable', 'server_error']);
/** Entra: the client is in a request loop (AADSTS50196), answered with 400 — a throttle. */
const THROTTLED_CODES = new Set([50196]);

/**
 * Errors from openid-client, sorted: the user must act (an error in `userMustAct`, or an id_token
 * that fails validation) → UpstreamRefusedError; anything else → UpstreamUnavailableError: the IdP
 * could not be reached, throttled or failed (network, timeout, 429, 5xx, not JSON, clock skew), or
 * refused our credential or request (`configurationFault`).
 */
function toUpstreamError(
  error: unknown,
  context: string,
  userMustAct: ReadonlySet<string>,
  responseBody?: { status: number; body: Record<string, unknown> },
): UpstreamRefusedError | UpstreamUnavailableError {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (e instanceof UpstreamRefusedError || e instanceof UpstreamUnavailableError) return e;
  }
  if (error instanceof client.ResponseBodyError) {
    const details = errorDetails(error.status, error.cause);
    const what = `${context}: upstream ${error.status} ${error.error}${details.errorCode ? ` (AADSTS${details.errorCode})` : ''}`;
    const throttled = error.status === 429 || THROTTLED_CODES.has(details.errorCode ?? 0);
    if (error.status >= 500 || throttled || UNAVAILABLE.has(error.error)) {
      return new UpstreamUnavailableError(what, { cause: error, details });
    }
    if (userMustAct.has(error.error)) return new UpstreamRefusedError(error.error, what, { cause: error, details });
    // invalid_client (our credential), invalid_request, invalid_scope, unsupported_grant_type, …
    return new UpstreamUnavailableError(what, { cause: error, details, configurationFault: true });
  }
  if (error instanceof client.WWWAuthenticateChallengeError) {
    // A 401 challenge at the token endpoint: our client authentication was refused.
    return new UpstreamUnavailableError(`${context}: upstream ${error.status} challenge`, {
      cause: error,
      details: { status: error.status },
      configurationFault: true,
    });
  }
  if (error instanceof client.AuthorizationResponseError) {
    return new UpstreamRefusedError(error.error, `${context}: ${error.error}`, { cause: error });
  }
  if (error instanceof client.ClientError && error.code !== undefined && !UNAVAILABLE_CODES.has(error.code)) {
    return new UpstreamRefusedError('invalid_response', `${context}: ${error.message}`, { cause: error });
  }
  // TypeError (fetch failed, refused connection), timeouts, clock skew, 5xx, non-JSON responses.
  const details = responseBody && errorDetails(responseBody.status, responseBody.body);
  const status = details ? ` (upstream ${details.status}${details.errorCode ? ` AADSTS${details.errorCode}` : ''})` : '';
  return new UpstreamUnavailableError(`${context}: ${error instanceof Error ? error.message : 'unknown error'}${status}`, {
    cause: error,
    ...(details ? { details } : {}),
  });
}

/** The status and JSON body of a response openid-client refused without reading it (a 5xx). */
async function errorResponseBody(error: unknown): Promise<{ status: number; body: Record<string, unknown> } | undefined> {
  const response = error instanceof client.ClientError ? error.cause : undefined;
  if (!(response instanceof Response)) return undefined;
  const body = response.bodyUsed
    ? {}
    : await response
        .clone()
        .json()
        .catch(() => ({}));
  return { status: response.status, body: typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {} };
}

const UNAVAILABLE_CODES = new Set([
  'OAUTH_RESPONSE_IS_NOT_CONFORM',
  'OAUTH_RESPONSE_IS_NOT_JSON',
  'OAUTH_TIMEOUT',
  'OAUTH_ABORT',
  'OAUTH_HTTP_REQUEST_FORBIDDEN',
  'OAUTH_REQUEST_PROTOCOL_FORBIDDEN',
  // An id_token "not yet valid" or "issued in the future" beyond the tolerance: our clock is off.
  'OAUTH_JWT_TIMESTAMP_CHECK_FAILED',
]);

/** Entra's error JSON: `error_codes`, `suberror`, `trace_id`, `correlation_id` (the ids its support asks for). */
function errorDetails(status: number, body: Record<string, unknown>): UpstreamErrorDetails {
  const codes = body['error_codes'];
  const code = Array.isArray(codes) && typeof codes[0] === 'number' ? codes[0] : undefined;
  const text = (name: string) => (typeof body[name] === 'string' ? (body[name] as string) : undefined);
  const details: UpstreamErrorDetails = {
    status,
    error: text('error'),
    errorCode: code,
    suberror: text('suberror'),
    claims: text('claims'),
    traceId: text('trace_id'),
    correlationId: text('correlation_id'),
  };
  for (const [name, value] of Object.entries(details)) if (value === undefined) delete details[name as keyof UpstreamErrorDetails];
  return details;
}

/** A configuration fault is logged as an error (an operator must act); the rest as warnings. */
function logUpstreamError(logger: UpstreamLogger | undefined, error: UpstreamRefusedError | UpstreamUnavailableError): void {
  if (!logger) return;
  const fields = { upstream: error.details ?? {}, err: error };
  if (error instanceof UpstreamUnavailableError && error.configurationFault) {
    logger.error(fields, 'the identity provider refused the gateway\'s credential or request: check upstream configuration');
  } else if (error instanceof UpstreamUnavailableError) {
    logger.warn(fields, 'the identity provider is unavailable');
  } else {
    logger.info(fields, 'the identity provider refused: the user must sign in again');
  }
}

export function insecureAllowed(issuer: URL, allowInsecureHttp: boolean | undefined): boolean {
  if (issuer.protocol === 'https:') return false;
  if (allowInsecureHttp && isLoopbackHost(issuer.hostname)) return true;
  throw new Error(`${issuer.href}: the issuer must be https (http only on loopback, in dev)`);
}

/**
 * private_key_jwt (RFC 7523 §2.2), `typ: JWT`. With a certificate, its SHA-256 thumbprint goes in the
 * header as `x5t#S256` (RFC 7515 §4.1.8; how MSAL names the certificate to Entra with PS256).
 * `audience` overrides `aud` (Entra wants the token endpoint the request goes to).
 */
export async function privateKeyJwtAuth(
  keyConfig: { privateKey: string; certificate?: string; keyId?: string },
  options: { audience?: 'token_endpoint'; rsaAlgorithm?: 'RS256' | 'PS256' } = {},
): Promise<client.ClientAuth> {
  // config/schema.ts checked the key (RSA, P-256 or Ed25519) and that the certificate is its own.
  const algorithm = jwsAlgorithm(keyConfig.privateKey, options.rsaAlgorithm ?? 'RS256');
  const key = await importPKCS8(keyConfig.privateKey, algorithm);
  let thumbprints: Record<string, string> = {};
  if (keyConfig.certificate) {
    const certificate = new X509Certificate(keyConfig.certificate);
    thumbprints = { 'x5t#S256': Buffer.from(certificate.fingerprint256.replaceAll(':', ''), 'hex').toString('base64url') };
  }
  return (as, clientMetadata, body, headers) =>
    client.PrivateKeyJwt(
      { key, kid: keyConfig.keyId },
      {
        [client.modifyAssertion]: (header, payload) => {
          Object.assign(header, { typ: 'JWT' }, thumbprints);
          if (options.audience === 'token_endpoint' && as.token_endpoint) payload.aud = as.token_endpoint;
        },
      },
    )(as, clientMetadata, body, headers);
}

function jwsAlgorithm(pem: string, rsa: 'RS256' | 'PS256'): string {
  const type = createPrivateKey(pem).asymmetricKeyType;
  return type === 'rsa' ? rsa : type === 'ed25519' ? 'EdDSA' : 'ES256';
}
