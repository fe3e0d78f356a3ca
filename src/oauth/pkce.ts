import { createHash } from 'node:crypto';
import { constantTimeEqual } from './secrets.ts';

/** RFC 7636 §4.1: 43–128 characters from the unreserved set. */
const VERIFIER_PATTERN = /^[A-Za-z0-9\-._~]{43,128}$/;
/** S256 challenges are base64url SHA-256 digests: exactly 43 characters. */
const CHALLENGE_PATTERN = /^[A-Za-z0-9\-_]{43}$/;

export function isValidChallenge(challenge: string): boolean {
  return CHALLENGE_PATTERN.test(challenge);
}

/** RFC 7636 §4.6 with S256 only (OAuth 2.1 §4.1.1; `plain` is refused earlier, at /authorize). */
export function verifyPkce(verifier: string, challenge: string): boolean {
  if (!VERIFIER_PATTERN.test(verifier)) return false;
  const computed = createHash('sha256').update(verifier).digest('base64url');
  return constantTimeEqual(computed, challenge);
}
