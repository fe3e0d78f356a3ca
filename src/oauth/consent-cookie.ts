import { CONSENT_COOKIE_TTL_SECONDS } from './context.ts';
import { COOKIE, hostCookie, parseCookies } from './cookies.ts';
import type { Signer } from './secrets.ts';
import { sha256 } from './secrets.ts';

const MAX_APPROVALS = 20;

/** Signed list of approvals, each bound to one client_id + redirect_uri pair. */
interface ConsentCookie {
  approvals: { binding: string; expiresAt: number }[];
}

function bindingOf(clientId: string, redirectUri: string): string {
  return sha256(`${clientId}\n${redirectUri}`).slice(0, 22);
}

function readApprovals(signer: Signer, cookieHeader: string | undefined, now: number) {
  const cookie = signer.verify<ConsentCookie>(parseCookies(cookieHeader).get(COOKIE.consent));
  if (!cookie || !Array.isArray(cookie.approvals)) return [];
  return cookie.approvals.filter((a) => typeof a?.binding === 'string' && typeof a.expiresAt === 'number' && a.expiresAt > now);
}

/** The pre-sign-in consent memory (MCP security best practices: per client, signed, __Host-). */
export function hasApprovalCookie(signer: Signer, cookieHeader: string | undefined, clientId: string, redirectUri: string, now: number) {
  const binding = bindingOf(clientId, redirectUri);
  return readApprovals(signer, cookieHeader, now).some((a) => a.binding === binding);
}

export function approvalCookieWith(signer: Signer, cookieHeader: string | undefined, clientId: string, redirectUri: string, now: number) {
  const binding = bindingOf(clientId, redirectUri);
  const approvals = readApprovals(signer, cookieHeader, now).filter((a) => a.binding !== binding);
  approvals.push({ binding, expiresAt: now + CONSENT_COOKIE_TTL_SECONDS });
  return hostCookie(COOKIE.consent, signer.sign({ approvals: approvals.slice(-MAX_APPROVALS) }), CONSENT_COOKIE_TTL_SECONDS);
}

/** Removes every approval of `clientId` (any redirect URI in `redirectUris`). */
export function approvalCookieWithout(signer: Signer, cookieHeader: string | undefined, clientId: string, redirectUris: string[], now: number) {
  const removed = new Set(redirectUris.map((uri) => bindingOf(clientId, uri)));
  const approvals = readApprovals(signer, cookieHeader, now).filter((a) => !removed.has(a.binding));
  return hostCookie(COOKIE.consent, signer.sign({ approvals }), CONSENT_COOKIE_TTL_SECONDS);
}
