import { hash } from 'node:crypto';

/** How tool arguments appear in audit records. */
export type ArgumentsMode = 'off' | 'hash' | 'redacted' | 'full';

const REDACTED = '[redacted]';
/** Keys whose values are never written, in any mode (tokens, codes, cookies, secrets). */
const SECRET_KEY = /token|secret|password|passwd|cookie|authorization|api[-_]?key|credential|^code$|private[-_]?key/i;

/**
 * Tool arguments as an audit record carries them:
 * - `off`: nothing; `hash`: SHA-256 of their canonical JSON (equal arguments, equal hash);
 * - `redacted`: the JSON with the values at `paths` replaced, and secret-named keys too;
 * - `full`: the JSON, secret-named keys still replaced.
 * Paths are dotted, `*` matching any one key or index: `snippet`, `options.*.value`, `items.*.secret`.
 */
export function auditArguments(mode: ArgumentsMode, args: unknown, paths: readonly string[] = []): unknown {
  if (mode === 'off' || args === undefined) return undefined;
  if (mode === 'hash') return `sha256:${hash('sha256', canonicalJson(args), 'base64url')}`;
  const rules = mode === 'redacted' ? paths.map((p) => p.split('.')) : [];
  return redact(args, [], rules);
}

function redact(value: unknown, at: string[], rules: string[][]): unknown {
  if (rules.some((rule) => rule.length === at.length && rule.every((segment, i) => segment === '*' || segment === at[i]))) return REDACTED;
  if (Array.isArray(value)) return value.map((item, i) => redact(item, [...at, String(i)], rules));
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, child]) => [key, SECRET_KEY.test(key) ? REDACTED : redact(child, [...at, key], rules)]),
  );
}

/** JSON with object keys sorted at every level (RFC 8785's ordering, enough for hashing our own values). */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
