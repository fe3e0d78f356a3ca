import type { FastifyRequest } from 'fastify';
import { decodeJwt, errors as joseErrors, jwtVerify } from 'jose';
import { ASYMMETRIC_ALGORITHMS } from '../config/schema.ts';
import type { ClientRecord } from '../ports/records.ts';
import type { ConfiguredClient } from './configured-clients.ts';
import type { AuthServerContext } from './context.ts';
import { OAuthError } from './errors.ts';
import { keys } from './keys.ts';
import { type Params, param } from './params.ts';
import { constantTimeEqual, sha256 } from './secrets.ts';

/** RFC 7523 §2.2: the client_assertion_type of a JWT client assertion. */
const JWT_CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** A client assertion may be used this long at most (exp − now), so its jti is remembered briefly. */
const MAX_CLIENT_ASSERTION_SECONDS = 600;
const CLOCK_SKEW_SECONDS = 30;

/** The presented credentials: client_id, and a secret or a signed assertion. */
interface Credentials {
  clientId: string;
  secret?: string;
  assertion?: string;
}

/**
 * Client authentication at the token and revocation endpoints (OAuth 2.1 §2.4):
 * public clients send client_id; confidential clients use client_secret_basic or _post, or
 * private_key_jwt (RFC 7523 §2.2, pre-registered clients with a JWK Set), or an Entra app-only
 * token as the client_assertion (pre-registered clients with `entraApp`, judged by `entraApps`).
 */
export async function authenticateClient(ctx: AuthServerContext, request: FastifyRequest, entraApps?: EntraAppTokenVerifier): Promise<ClientRecord> {
  const presented = credentials(request, ctx.configuredClients);
  let client: ClientRecord;
  try {
    client = await ctx.clients.find(presented.clientId);
  } catch (error) {
    if (error instanceof OAuthError && error.code !== 'temporarily_unavailable') throw invalidClient(error.description);
    throw error;
  }
  const entraApp = ctx.configuredClients.get(client.clientId)?.entraApp;
  if (entraApp) {
    // Its token is judged where the Entra keys are (/token); /revoke has nothing to revoke for it.
    if (!entraApps) throw invalidClient('this client authenticates with its Entra app\'s token, at /token only');
    if (!presented.assertion) throw invalidClient('this client authenticates with its Entra app\'s token: send it as client_assertion');
    await verifyEntraAppAssertion(entraApps, entraApp, presented.assertion);
    return client;
  }
  if (client.tokenEndpointAuthMethod === 'private_key_jwt') {
    if (!presented.assertion) throw invalidClient('this client authenticates with private_key_jwt: send client_assertion');
    await verifyClientAssertion(ctx, client.clientId, presented.assertion);
    return client;
  }
  if (presented.assertion) throw invalidClient('this client is not registered for private_key_jwt');
  if (client.clientSecretHash) {
    if (!presented.secret || !constantTimeEqual(sha256(presented.secret), client.clientSecretHash)) throw invalidClient('client authentication failed');
  }
  return client;
}

/** True when the request carries any client credentials (client_id, Basic, or an assertion). */
export function presentsClient(request: FastifyRequest): boolean {
  const body = request.body as Params;
  return param(body, 'client_id') !== undefined || param(body, 'client_assertion') !== undefined || /^basic /i.test(request.headers.authorization ?? '');
}

/**
 * RFC 7523 §3 (client authentication): iss = sub = client_id, aud = our issuer or token endpoint,
 * exp required and near, signed by one of the client's keys with an asymmetric algorithm, and the
 * jti used once across every replica (the Store) until the assertion expires.
 */
async function verifyClientAssertion(ctx: AuthServerContext, clientId: string, assertion: string): Promise<void> {
  const configured = ctx.configuredClients.get(clientId);
  if (!configured?.keys) throw invalidClient('this client has no keys');
  let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
  try {
    ({ payload } = await jwtVerify(assertion, configured.keys, {
      issuer: clientId,
      subject: clientId,
      audience: [ctx.issuer, `${ctx.issuer}/`, `${ctx.issuer}/token`],
      algorithms: [...ASYMMETRIC_ALGORITHMS],
      requiredClaims: ['exp', 'jti'],
      currentDate: new Date(ctx.clock.nowSeconds() * 1000),
      clockTolerance: CLOCK_SKEW_SECONDS,
    }));
  } catch (error) {
    throw invalidClient(`client assertion refused: ${joseReason(error)}`);
  }
  const now = ctx.clock.nowSeconds();
  if (payload.exp! > now + MAX_CLIENT_ASSERTION_SECONDS) throw invalidClient(`client assertion must expire within ${MAX_CLIENT_ASSERTION_SECONDS} seconds`);
  const remember = Math.max(1, payload.exp! - now + CLOCK_SKEW_SECONDS);
  if (!(await ctx.store.setIfAbsent(keys.usedAssertion(`client:${clientId}`, payload.jti!), 1, remember))) {
    throw invalidClient('client assertion was already used (jti)');
  }
}

/**
 * An Entra app-only token (managed identity, service principal) as the client_assertion: judged as
 * a workload's (token-entra-workload.ts: Entra's signature, `aud` the gateway's app, `tid` allowed,
 * app-only), and its `tid` and `azp`/`appid` must be the client's own.
 *
 * Replay: no single use. RFC 7523 §3 makes `jti` optional and its single use a MAY; an Entra token
 * has no `jti` (`uti` instead) and is meant to be presented again for its lifetime (IMDS and MSAL
 * cache it). It is bounded instead by its audience (only this gateway's app), its `exp` (Entra's,
 * ≤ 24 h for a managed identity) and TLS; the same rule as a client secret, which it replaces.
 */
async function verifyEntraAppAssertion(entraApps: EntraAppTokenVerifier, entraApp: NonNullable<ConfiguredClient['entraApp']>, assertion: string): Promise<void> {
  const app = await entraApps.verify(assertion, (description) => invalidClient(`client assertion refused: ${description}`));
  if (app.tenantId !== entraApp.tenantId) throw invalidClient(`client assertion refused: tenant ${app.tenantId} is not this client's`);
  if (app.appId !== entraApp.appId) throw invalidClient(`client assertion refused: app ${app.appId} is not this client's`);
}

/** What judges an Entra app-only token (createEntraAppTokens in token-entra-workload.ts). */
export interface EntraAppTokenVerifier {
  verify(assertion: string, refuse: (description: string) => OAuthError): Promise<{ tenantId: string; appId: string }>;
}

/** A jose verification failure in words safe to send (no key material, no token). */
export function joseReason(error: unknown): string {
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `${error.claim}: ${error.message}`;
  if (error instanceof joseErrors.JWTExpired) return 'expired';
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'signature does not verify';
  if (error instanceof joseErrors.JWKSNoMatchingKey) return 'no key of the issuer matches (kid)';
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  if (error instanceof joseErrors.JOSEError) return error.code;
  throw error;
}

/**
 * RFC 6749 §3.1 / /revoke (RFC 7009 §2.1). A metadata-document client is public (it authenticates
 * by client_id alone), so its document is not fetched here: an unauthenticated endpoint must not
 * make us fetch a URL or store a record, and only tokens issued to exactly that client_id can be
 * revoked with it. Other clients are authenticated as at /token.
 */
export async function authenticateRevokingClient(ctx: AuthServerContext, request: FastifyRequest): Promise<string> {
  const { clientId } = credentials(request, ctx.configuredClients);
  if (ctx.clients.isMetadataDocumentUrl(clientId)) return clientId;
  return (await authenticateClient(ctx, request)).clientId;
}

/**
 * client_id and secret, from the form or from Basic credentials (RFC 6749 §2.3.1), or a client
 * assertion (RFC 7523 §2.2), whose `sub` names the client when client_id is left out (§3); an Entra
 * app-only token names its client by `tid` + `azp`/`appid` (its `sub` is the app's object id).
 */
function credentials(request: FastifyRequest, configured: ReadonlyMap<string, ConfiguredClient>): Credentials {
  const body = request.body as Params;
  let clientId = param(body, 'client_id');
  let secret = param(body, 'client_secret');
  const assertionType = param(body, 'client_assertion_type');
  const assertion = param(body, 'client_assertion');
  const authorization = request.headers.authorization;
  if (authorization?.toLowerCase().startsWith('basic ')) {
    const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw invalidClient('malformed Basic credentials');
    // RFC 6749 §2.3.1: form-urlencoded inside Basic.
    const basicId = safeDecode(decoded.slice(0, colon));
    if (clientId !== undefined && clientId !== basicId) throw invalidClient('client_id differs from the Basic credentials');
    clientId = basicId;
    secret = safeDecode(decoded.slice(colon + 1));
  }
  if (assertion !== undefined || assertionType !== undefined) {
    if (assertionType !== JWT_CLIENT_ASSERTION_TYPE) throw invalidClient(`client_assertion_type must be ${JWT_CLIENT_ASSERTION_TYPE}`);
    if (assertion === undefined) throw invalidClient('client_assertion is required with client_assertion_type');
    if (secret !== undefined) throw invalidClient('use one client authentication method, not a secret and an assertion');
    let claims: ReturnType<typeof decodeJwt>;
    try {
      claims = decodeJwt(assertion);
    } catch {
      throw invalidClient('client_assertion is not a JWT');
    }
    // An Entra app's client may be named by client_id, else by the token's tid + azp/appid.
    if (clientId !== undefined && configured.get(clientId)?.entraApp) return { clientId, assertion };
    const subject = entraClientOf(configured, claims) ?? claims.sub;
    if (typeof subject !== 'string') throw invalidClient('client_assertion has no sub');
    if (clientId !== undefined && clientId !== subject) throw invalidClient('client_id differs from the client assertion sub');
    return { clientId: subject, assertion };
  }
  if (!clientId) throw invalidClient('client authentication required: send client_id');
  return { clientId, secret };
}

/** The configured client whose `entraApp` the (still unverified) claims name, if any. */
function entraClientOf(configured: ReadonlyMap<string, ConfiguredClient>, claims: ReturnType<typeof decodeJwt>): string | undefined {
  const appId = claims['azp'] ?? claims['appid'];
  if (typeof claims['tid'] !== 'string' || typeof appId !== 'string') return undefined;
  for (const [clientId, client] of configured) {
    if (client.entraApp?.tenantId === claims['tid'] && client.entraApp.appId === appId) return clientId;
  }
  return undefined;
}

function invalidClient(description: string): OAuthError {
  return new OAuthError('invalid_client', description, { headers: { 'www-authenticate': 'Basic realm="mcp-entra-gateway"' } });
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    throw invalidClient('malformed Basic credentials');
  }
}
