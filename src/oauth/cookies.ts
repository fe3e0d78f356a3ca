/** Minimal cookie parsing and `__Host-` cookie serialisation (RFC 6265bis §4.1.3.2). */

export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  if (!header) return cookies;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    if (!cookies.has(name)) cookies.set(name, part.slice(eq + 1).trim());
  }
  return cookies;
}

/** `__Host-` cookies: Secure, Path=/, no Domain; ours are also HttpOnly and SameSite=Lax. */
export function hostCookie(name: `__Host-${string}`, value: string, maxAgeSeconds: number): string {
  return `${name}=${value}; Path=/; Max-Age=${maxAgeSeconds}; Secure; HttpOnly; SameSite=Lax`;
}

export const COOKIE = {
  consent: '__Host-mcpgw-consent',
  csrf: '__Host-mcpgw-csrf',
  session: '__Host-mcpgw-session',
  browser: '__Host-mcpgw-browser',
} as const;
