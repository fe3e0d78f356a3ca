import { createRemoteJWKSet, errors, type JWTPayload, jwtVerify } from 'jose';

/** The caller, from the gateway's verified identity assertion. Claim names as on the wire. */
export interface CallerIdentity {
  sub: string;
  oid?: string;
  tid?: string;
  name?: string;
  email?: string;
  preferred_username?: string;
  roles?: string[];
  groups?: string[];
  client_id?: string;
}

export interface IdentityVerifierOptions {
  jwksUrl: string;
  audience: string;
  issuer?: string;
}

/** Gateway and backend run on different machines; allow a little clock skew on exp/nbf/iat. */
export const IDENTITY_CLOCK_TOLERANCE_SECONDS = 30;

/** The assertion itself is bad (→ 401); anything else thrown by the verifier is our side (→ 503). */
export class IdentityAssertionError extends Error {}

/** jose failures that mean "this token is not acceptable", as opposed to "the JWKS is unreachable". */
function isRejection(error: unknown): boolean {
  return (
    error instanceof errors.JWTClaimValidationFailed ||
    error instanceof errors.JWTExpired ||
    error instanceof errors.JWTInvalid ||
    error instanceof errors.JWSInvalid ||
    error instanceof errors.JWSSignatureVerificationFailed ||
    error instanceof errors.JOSEAlgNotAllowed ||
    error instanceof errors.JOSENotSupported ||
    error instanceof errors.JWKSNoMatchingKey ||
    error instanceof errors.JWKSMultipleMatchingKeys
  );
}

/**
 * Verifies the ES256 identity assertion the gateway signs for each forwarded request: signature
 * against the gateway's JWKS (RFC 7517, fetched and cached by jose), audience, expiry, and issuer
 * when configured (RFC 7519 §4.1).
 */
export function createIdentityVerifier(options: IdentityVerifierOptions): (assertion: string) => Promise<CallerIdentity> {
  const jwks = createRemoteJWKSet(new URL(options.jwksUrl));
  return async (assertion) => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(assertion, jwks, {
        algorithms: ['ES256'],
        audience: options.audience,
        ...(options.issuer ? { issuer: options.issuer } : {}),
        requiredClaims: ['sub', 'exp'],
        clockTolerance: IDENTITY_CLOCK_TOLERANCE_SECONDS,
      }));
    } catch (error) {
      if (isRejection(error)) throw new IdentityAssertionError((error as Error).message);
      throw error;
    }
    return identityFromClaims(payload);
  };
}

function identityFromClaims(claims: JWTPayload): CallerIdentity {
  const identity: CallerIdentity = { sub: claims.sub as string };
  for (const key of ['oid', 'tid', 'name', 'email', 'preferred_username', 'client_id'] as const) {
    const value = claims[key];
    if (typeof value === 'string') identity[key] = value;
  }
  for (const key of ['roles', 'groups'] as const) {
    const value = claims[key];
    if (Array.isArray(value)) identity[key] = value.filter((item): item is string => typeof item === 'string');
  }
  return identity;
}
