import type { FastifyRequest } from 'fastify';
import { decodeJwt, errors as joseErrors, jwtVerify } from 'jose';
import { ASYMMETRIC_ALGORITHMS } from '../config/schema.ts';
import type { ClientRecord } from '../ports/records.ts';
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
 * private_key_jwt (RFC 7523 §2.2, pre-registered clients with a JWK Set).
 */
export async function authenticateClient(ctx: AuthServerContext, request: FastifyRequest): Promise<ClientRecord> {
  const presented = credentials(request);
  let client: ClientRecord;
  try {
    client = await ctx.clients.find(presented.clientId);
  } catch (error) {
    if (error instanceof OAuthError && error.code !== 'temporarily_unavailable') throw invalidClient(error.description);
    throw error;
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
  const { clientId } = credentials(request);
  if (ctx.clients.isMetadataDocumentUrl(clientId)) return clientId;
  return (await authenticateClient(ctx, request)).clientId;
}

/**
 * client_id and secret, from the form or from Basic credentials (RFC 6749 §2.3.1), or a client
 * assertion (RFC 7523 §2.2), whose `sub` names the client when client_id is left out (§3).
 */
function credentials(request: FastifyRequest): Credentials {
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
    let subject: unknown;
    try {
      subject = decodeJwt(assertion).sub;
    } catch {
      throw invalidClient('client_assertion is not a JWT');
    }
    if (typeof subject !== 'string') throw invalidClient('client_assertion has no sub');
    if (clientId !== undefined && clientId !== subject) throw invalidClient('client_id differs from the client assertion sub');
    return { clientId: subject, assertion };
  }
  if (!clientId) throw invalidClient('client authentication required: send client_id');
  return { clientId, secret };
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
