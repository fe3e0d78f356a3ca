import { isLoopbackHost } from '../config/schema.ts';

/**
 * Schemes that can never be a native app's redirect: they run or load content, or open the
 * operating system's own handlers (`ms-settings:`, `ms-msdt:`, `search-ms:`). No configuration
 * can allow them.
 */
const FORBIDDEN_SCHEMES = new Set([
  'javascript',
  'data',
  'file',
  'vbscript',
  'about',
  'blob',
  'ws',
  'wss',
  'view-source',
  'filesystem',
  'intent',
  'jar',
  'search-ms',
]);

/** Longer URIs serve no client and bloat every stored record and consent page. */
const MAX_REDIRECT_URI_LENGTH = 2048;

function isForbiddenScheme(scheme: string): boolean {
  return FORBIDDEN_SCHEMES.has(scheme) || scheme.startsWith('ms-');
}

/** Problem with a scheme configured in `clientRegistration.customSchemes`, checked at start. */
export function customSchemeProblem(scheme: string): string | undefined {
  if (scheme === 'http' || scheme === 'https') return `${scheme} is not a custom scheme`;
  return isForbiddenScheme(scheme) ? `scheme ${scheme}: can never be a redirect` : undefined;
}

/**
 * Registration rule (OAuth 2.1 §2.3.1, RFC 8252 §7, MCP security best practices):
 * https anywhere; http only on a loopback host; or a private-use scheme for native apps —
 * reverse-domain (containing a dot, RFC 8252 §7.1), or one of `customSchemes` (editors such as
 * `cursor:` and `vscode:` use bare names). No fragments (RFC 6749 §3.1.2). Returns the problem,
 * or undefined when acceptable.
 */
export function redirectUriProblem(value: string, customSchemes: readonly string[]): string | undefined {
  if (value.length > MAX_REDIRECT_URI_LENGTH) return `must be at most ${MAX_REDIRECT_URI_LENGTH} characters`;
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
  const scheme = url.protocol.slice(0, -1);
  if (isForbiddenScheme(scheme)) return `scheme ${url.protocol} is not allowed`;
  if (scheme.includes('.') || customSchemes.includes(scheme)) return undefined;
  return `scheme ${url.protocol} is not allowed: use https, loopback http or a reverse-domain private-use scheme (RFC 8252 §7.1)`;
}

/**
 * Exact string match (OAuth 2.1 §4.1.1), except that for http loopback URIs the port may
 * differ, since native apps get an ephemeral port (RFC 8252 §7.3). A redirect URI never has a
 * fragment (RFC 6749 §3.1.2).
 */
export function redirectUriMatches(registered: readonly string[], requested: string): boolean {
  if (requested.includes('#')) return false;
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
