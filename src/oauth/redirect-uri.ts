import { isLoopbackHost } from '../config/schema.ts';

/** Schemes that can never be a native app's redirect (they run or load content). */
const FORBIDDEN_SCHEMES = new Set(['javascript:', 'data:', 'file:', 'vbscript:', 'about:', 'blob:', 'ws:', 'wss:']);

/**
 * Registration rule (OAuth 2.1 §2.3.1, RFC 8252 §7, MCP security best practices):
 * https anywhere; http only on a loopback host; or a private-use scheme for native apps.
 * No fragments (RFC 6749 §3.1.2). Returns the problem, or undefined when acceptable.
 */
export function redirectUriProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'not an absolute URI';
  }
  if (url.hash || value.includes('#')) return 'must not contain a fragment';
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:') {
    return isLoopbackHost(url.hostname) ? undefined : 'http is allowed only on loopback hosts';
  }
  if (FORBIDDEN_SCHEMES.has(url.protocol)) return `scheme ${url.protocol} is not allowed`;
  // RFC 8252 §7.1: private-use URI schemes for native apps (e.g. cursor://, vscode://).
  return /^[a-z][a-z0-9+.-]*:$/.test(url.protocol) ? undefined : 'invalid scheme';
}

/**
 * Exact string match (OAuth 2.1 §4.1.1), except that for http loopback URIs the port may
 * differ, since native apps get an ephemeral port (RFC 8252 §7.3).
 */
export function redirectUriMatches(registered: readonly string[], requested: string): boolean {
  if (registered.includes(requested)) return true;
  let asked: URL;
  try {
    asked = new URL(requested);
  } catch {
    return false;
  }
  if (asked.protocol !== 'http:' || !isLoopbackHost(asked.hostname)) return false;
  return registered.some((candidate) => {
    const known = URL.canParse(candidate) ? new URL(candidate) : undefined;
    if (known?.protocol !== 'http:' || !isLoopbackHost(known.hostname)) return false;
    return (
      known.hostname === asked.hostname &&
      known.pathname === asked.pathname &&
      known.search === asked.search &&
      known.username === asked.username &&
      known.password === asked.password
    );
  });
}
