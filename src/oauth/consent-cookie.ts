import { CONSENT_COOKIE_TTL_SECONDS } from './context.ts';
import { COOKIE, hostCookie, parseCookies } from './cookies.ts';
import type { Signer } from './secrets.ts';
import { sha256 } from './secrets.ts';

const MAX_APPROVALS = 20;

/** What one approval covers: a client at one redirect URI, for one resource and these scopes. */
export interface Approval {
  clientId: string;
  redirectUri: string;
  resource: string;
  scopes: string[];
}

/**
 * Signed list of approvals. Each is bound to client_id + redirect_uri + resource + the exact
 * scope set shown on the consent page, so it never covers a wider request.
 */
interface ConsentCookie {
  approvals: { client: string; binding: string; expiresAt: number }[];
}

const clientHash = (clientId: string) => sha256(`client\n${clientId}`).slice(0, 16);
const bindingOf = (a: Approval) => sha256([a.clientId, a.redirectUri, a.resource, [...a.scopes].sort().join(' ')].join('\n')).slice(0, 22);

function readApprovals(signer: Signer, cookieHeader: string | undefined, now: number) {
  const cookie = signer.verify<ConsentCookie>(parseCookies(cookieHeader).get(COOKIE.consent));
  if (!cookie || !Array.isArray(cookie.approvals)) return [];
  return cookie.approvals.filter(
    (a) => typeof a?.binding === 'string' && typeof a.client === 'string' && typeof a.expiresAt === 'number' && a.expiresAt > now,
  );
}

/** The pre-sign-in consent memory (MCP security best practices: per client, signed, __Host-). */
export function hasApprovalCookie(signer: Signer, cookieHeader: string | undefined, approval: Approval, now: number) {
  const binding = bindingOf(approval);
  return readApprovals(signer, cookieHeader, now).some((a) => a.binding === binding);
}

/** Whether this browser approved the client before (for any resource): it trusts its redirect URIs. */
export function hasAnyApprovalFor(signer: Signer, cookieHeader: string | undefined, clientId: string, now: number) {
  const client = clientHash(clientId);
  return readApprovals(signer, cookieHeader, now).some((a) => a.client === client);
}

export function approvalCookieWith(signer: Signer, cookieHeader: string | undefined, approval: Approval, now: number) {
  const binding = bindingOf(approval);
  const approvals = readApprovals(signer, cookieHeader, now).filter((a) => a.binding !== binding);
  approvals.push({ client: clientHash(approval.clientId), binding, expiresAt: now + CONSENT_COOKIE_TTL_SECONDS });
  return hostCookie(COOKIE.consent, signer.sign({ approvals: approvals.slice(-MAX_APPROVALS) }), CONSENT_COOKIE_TTL_SECONDS);
}

/** Removes every approval of `clientId` (revoked at /account). */
export function approvalCookieWithout(signer: Signer, cookieHeader: string | undefined, clientId: string, now: number) {
  const client = clientHash(clientId);
  const approvals = readApprovals(signer, cookieHeader, now).filter((a) => a.client !== client);
  return hostCookie(COOKIE.consent, signer.sign({ approvals }), CONSENT_COOKIE_TTL_SECONDS);
}
