import { createPrivateKey, X509Certificate } from 'node:crypto';
import { decodeJwt, importPKCS8 } from 'jose';
import * as client from 'openid-client';
import { isLoopbackHost, type OidcIdpConfig } from '../config/schema.ts';
import {
  type UpstreamAuthorizationRequest,
  type UpstreamIdp,
  UpstreamRefusedError,
  type UpstreamSignIn,
  type UpstreamTokens,
  UpstreamUnavailableError,
  type UserIdentity,
} from '../ports/idp.ts';

const DISCOVERY_TIMEOUT_SECONDS = 10;

export interface OidcIdpOptions {
  /** The gateway's /callback URL, registered at the IdP. */
  redirectUri: string;
  /** `dev` when this adapter talks to the embedded dev IdP. */
  kind?: 'oidc' | 'dev';
  /** Allow http:// issuers, on loopback only (the dev IdP). */
  allowInsecureHttp?: boolean;
}

/** Any OpenID Provider, found by discovery, with a client secret or private_key_jwt. */
export async function createOidcIdp(config: OidcIdpConfig, options: OidcIdpOptions): Promise<UpstreamIdp> {
  const issuer = new URL(config.issuer);
  const clientAuth = config.privateKeyJwt
    ? await privateKeyJwtAuth(config.privateKeyJwt, 'upstream.oidc.privateKeyJwt')
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
    prompt: (prompt) => prompt,
    // RFC 6749 §6: without a stored scope, omitting `scope` means "as originally granted".
    refreshScope: (stored) => stored,
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
  /** The `prompt` sent upstream for the one the gateway was asked for (undefined: none). */
  prompt(requested: string | undefined): string | undefined;
  /** The `scope` of a refresh request, from the scope stored with the tokens. */
  refreshScope(stored: string | undefined): string | undefined;
  /** Extra checks on validated id_token claims; throws UpstreamRefusedError. */
  checkClaims?(claims: client.IDToken): void;
}

export function createOpenIdIdp(settings: OpenIdIdpSettings): UpstreamIdp {
  let configuration: Promise<client.Configuration> | undefined;

  const discover = () =>
    client
      .discovery(settings.server, settings.clientId, undefined, settings.clientAuth, {
        timeout: DISCOVERY_TIMEOUT_SECONDS,
        ...(settings.allowInsecureHttp ? { execute: [client.allowInsecureRequests] } : {}),
        ...(settings.fetch ? { [client.customFetch]: settings.fetch } : {}),
      })
      .catch((error: unknown) => {
        throw toUpstreamError(error, `discovery of ${settings.server.href} failed`);
      });

  // Discovery is lazy and retried on the next call after a failure: a down IdP at start must not
  // stop the gateway (readiness reports it instead).
  const getConfiguration = (): Promise<client.Configuration> => {
    configuration ??= discover().catch((error: unknown) => {
      configuration = undefined;
      throw error;
    });
    return configuration;
  };

  return {
    kind: settings.kind,

    async authorizationUrl(request: UpstreamAuthorizationRequest): Promise<URL> {
      const config = await getConfiguration();
      const parameters: Record<string, string> = {
        redirect_uri: settings.redirectUri,
        scope: settings.scopes.join(' '),
        state: request.state,
        nonce: request.nonce,
        // RFC 7636 / OAuth 2.1: the gateway's own PKCE for the upstream leg, S256 only.
        code_challenge: await client.calculatePKCECodeChallenge(request.codeVerifier),
        code_challenge_method: 'S256',
      };
      const prompt = settings.prompt(request.prompt);
      if (prompt) parameters['prompt'] = prompt;
      if (request.loginHint) parameters['login_hint'] = request.loginHint;
      return client.buildAuthorizationUrl(config, parameters);
    },

    async completeSignIn(callback): Promise<UpstreamSignIn> {
      const config = await getConfiguration();
      let response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
      try {
        // openid-client checks state, the code exchange (PKCE), and the id_token: signature, iss,
        // aud, nonce, exp/iat (OIDC Core §3.1.3.7).
        response = await client.authorizationCodeGrant(config, callback.callbackUrl, {
          pkceCodeVerifier: callback.codeVerifier,
          expectedState: callback.state,
          expectedNonce: callback.nonce,
          idTokenExpected: true,
        });
      } catch (error) {
        throw toUpstreamError(error, 'upstream sign-in failed');
      }
      const claims = response.claims();
      if (!claims) throw new UpstreamRefusedError('invalid_response', 'the upstream returned no id_token');
      settings.checkClaims?.(claims);
      return { identity: identityFrom(claims, settings), tokens: tokensFrom(response) };
    },

    async refresh(tokens: UpstreamTokens): Promise<UpstreamTokens> {
      if (!tokens.refreshToken) throw new UpstreamRefusedError('invalid_grant', 'no upstream refresh token');
      const config = await getConfiguration();
      const scope = settings.refreshScope(tokens.scope);
      let response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
      try {
        response = await client.refreshTokenGrant(config, tokens.refreshToken, scope ? { scope } : undefined);
      } catch (error) {
        throw toUpstreamError(error, 'upstream refresh failed');
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
      const fresh = tokensFrom(response);
      return {
        ...fresh,
        // An IdP may keep the refresh token (no rotation) or leave out the id_token and scope.
        refreshToken: fresh.refreshToken ?? tokens.refreshToken,
        idToken: fresh.idToken ?? tokens.idToken,
        scope: fresh.scope ?? tokens.scope,
      };
    },

    async ping(): Promise<void> {
      // A fresh fetch of the metadata each time: readiness must reflect the IdP now.
      const config = await discover();
      configuration ??= Promise.resolve(config);
    },
  };
}

function identityFrom(claims: client.IDToken, settings: OpenIdIdpSettings): UserIdentity {
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
  };
}

function tokensFrom(response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers): UpstreamTokens {
  const expiresIn = response.expiresIn();
  return {
    accessToken: response.access_token,
    refreshToken: response.refresh_token,
    idToken: response.id_token,
    expiresAt: expiresIn === undefined ? undefined : Math.floor(Date.now() / 1000) + expiresIn,
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
 * Errors from openid-client, sorted: the IdP said no (an OAuth error, or a response that fails
 * validation) → UpstreamRefusedError; it could not be reached or failed (network, timeout, 5xx,
 * not JSON) → UpstreamUnavailableError.
 */
function toUpstreamError(error: unknown, context: string): UpstreamRefusedError | UpstreamUnavailableError {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (e instanceof UpstreamRefusedError || e instanceof UpstreamUnavailableError) return e;
  }
  if (error instanceof client.ResponseBodyError) {
    // The gateway's own credentials being refused (an expired Entra secret) is an outage to fix,
    // not a reason to end every user's grant.
    if (error.status >= 500 || NOT_THE_USERS_FAULT.has(error.error)) {
      return new UpstreamUnavailableError(`${context}: upstream ${error.status} ${error.error}`, { cause: error });
    }
    return new UpstreamRefusedError(error.error, `${context}: ${error.error}`, { cause: error });
  }
  if (error instanceof client.AuthorizationResponseError) {
    return new UpstreamRefusedError(error.error, `${context}: ${error.error}`, { cause: error });
  }
  if (error instanceof client.ClientError && error.code !== undefined && !UNAVAILABLE_CODES.has(error.code)) {
    return new UpstreamRefusedError('invalid_response', `${context}: ${error.message}`, { cause: error });
  }
  // TypeError (fetch failed, refused connection), timeouts, 5xx / non-JSON responses.
  return new UpstreamUnavailableError(`${context}: ${error instanceof Error ? error.message : 'unknown error'}`, {
    cause: error,
  });
}

const NOT_THE_USERS_FAULT = new Set(['invalid_client', 'unauthorized_client', 'server_error', 'temporarily_unavailable']);

const UNAVAILABLE_CODES = new Set([
  'OAUTH_RESPONSE_IS_NOT_CONFORM',
  'OAUTH_RESPONSE_IS_NOT_JSON',
  'OAUTH_TIMEOUT',
  'OAUTH_ABORT',
  'OAUTH_HTTP_REQUEST_FORBIDDEN',
  'OAUTH_REQUEST_PROTOCOL_FORBIDDEN',
]);

export function insecureAllowed(issuer: URL, allowInsecureHttp: boolean | undefined): boolean {
  if (issuer.protocol === 'https:') return false;
  if (allowInsecureHttp && isLoopbackHost(issuer.hostname)) return true;
  throw new Error(`${issuer.href}: the issuer must be https (http only on loopback, in dev)`);
}

/**
 * private_key_jwt (RFC 7523 §2.2). With a certificate, its thumbprints go in the header (`x5t#S256`,
 * and SHA-1 `x5t`, which Entra reads). `audience` overrides `aud` (Entra wants its token endpoint).
 */
export async function privateKeyJwtAuth(
  keyConfig: { privateKey: string; certificate?: string; keyId?: string },
  configKey: string,
  options: { audience?: 'token_endpoint'; rsaAlgorithm?: 'RS256' | 'PS256' } = {},
): Promise<client.ClientAuth> {
  const algorithm = jwsAlgorithm(keyConfig.privateKey, configKey, options.rsaAlgorithm ?? 'RS256');
  const key = await importPKCS8(keyConfig.privateKey, algorithm);
  let thumbprints: Record<string, string> = {};
  if (keyConfig.certificate) {
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(keyConfig.certificate);
    } catch {
      throw new Error(`${configKey}.certificate: not a PEM certificate`);
    }
    if (!certificate.checkPrivateKey(createPrivateKey(keyConfig.privateKey))) {
      throw new Error(`${configKey}.certificate: does not match the private key`);
    }
    thumbprints = {
      'x5t#S256': Buffer.from(certificate.fingerprint256.replaceAll(':', ''), 'hex').toString('base64url'),
      x5t: Buffer.from(certificate.fingerprint.replaceAll(':', ''), 'hex').toString('base64url'),
    };
  }
  return (as, clientMetadata, body, headers) =>
    client.PrivateKeyJwt(
      { key, kid: keyConfig.keyId },
      {
        [client.modifyAssertion]: (header, payload) => {
          Object.assign(header, thumbprints);
          if (options.audience === 'token_endpoint' && as.token_endpoint) payload.aud = as.token_endpoint;
        },
      },
    )(as, clientMetadata, body, headers);
}

function jwsAlgorithm(pem: string, configKey: string, rsa: 'RS256' | 'PS256'): string {
  let type: string | undefined;
  let curve: string | undefined;
  try {
    const key = createPrivateKey(pem);
    type = key.asymmetricKeyType;
    curve = key.asymmetricKeyDetails?.namedCurve;
  } catch {
    throw new Error(`${configKey}.privateKey: not a PEM private key`);
  }
  if (type === 'rsa') return rsa;
  if (type === 'ec' && curve === 'prime256v1') return 'ES256';
  if (type === 'ed25519') return 'EdDSA';
  throw new Error(`${configKey}.privateKey: unsupported key type ${type ?? 'unknown'} (use RSA, P-256 or Ed25519)`);
}
