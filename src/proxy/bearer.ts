import type { IncomingHttpHeaders } from 'node:http';
import type { ProtectedResource } from '../oauth/resources.ts';
import type { AccessTokenRecord } from '../ports/records.ts';

/** A cached token is answered at once; one the Store must be asked about, by a promise. */
export type ValidateAccessToken = (token: string) => AccessTokenRecord | undefined | Promise<AccessTokenRecord | undefined>;

export interface BearerRefusal {
  ok: false;
  status: 401 | 403;
  wwwAuthenticate: string;
  body: { error: string; error_description: string };
}

export type BearerResult = { ok: true; token: string; record: AccessTokenRecord } | BearerRefusal;

/** The scope a token must carry to use the resource: its first (default) scope. */
function requiredScope(resource: ProtectedResource): string {
  return resource.scopes[0]!;
}

/**
 * RFC 6750 §2.1: `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1).
 * Tokens in the query or a form body are not accepted (PRM advertises the header method only).
 */
function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const match = /^Bearer +(\S+) *$/i.exec(headers.authorization ?? '');
  return match?.[1];
}

/**
 * The gate in front of every MCP endpoint (MCP 2025-11-25 authorization §Access Token Usage):
 * - no Bearer credentials → 401 with the RFC 9728 §5.1 challenge (`resource_metadata`, `scope`) and no
 *   error code (RFC 6750 §3.1);
 * - unknown, expired, revoked token, or one issued for another resource (audience, RFC 8707) →
 *   401 `error="invalid_token"`;
 * - token without the required scope → 403 `error="insufficient_scope"` (insufficientScope).
 */
export function checkBearer(
  headers: IncomingHttpHeaders,
  resource: ProtectedResource,
  validate: ValidateAccessToken,
): BearerResult | Promise<BearerResult> {
  const token = bearerToken(headers);
  if (token === undefined) {
    return {
      ok: false,
      status: 401,
      wwwAuthenticate: challenge(resource),
      body: { error: 'invalid_token', error_description: 'A bearer token is required' },
    };
  }
  // A cached token is judged without a promise (this runs on every MCP call).
  const record = validate(token);
  return record instanceof Promise ? record.then((r) => judge(token, r, resource)) : judge(token, record, resource);
}

// Built only for a refusal. MCP 2025-11-25 authorization §Scope Selection Strategy: the basic
// scopes; more by step-up.
function challenge(resource: ProtectedResource): string {
  return `Bearer resource_metadata="${resource.metadataUrl}", scope="${resource.defaultScopes.join(' ')}"`;
}

function judge(token: string, record: AccessTokenRecord | undefined, resource: ProtectedResource): BearerResult {
  // The audience check: a token is only good for the resource it was issued for.
  if (!record || record.resource !== resource.resource) {
    return {
      ok: false,
      status: 401,
      wwwAuthenticate: `${challenge(resource)}, error="invalid_token"`,
      body: { error: 'invalid_token', error_description: 'The access token is invalid, expired, revoked or for another resource' },
    };
  }
  const needed = requiredScope(resource);
  if (!record.scopes.includes(needed)) return insufficientScope(resource, record.scopes, [needed]);
  return { ok: true, token, record };
}

/**
 * 403 `error="insufficient_scope"` (RFC 6750 §3.1; MCP 2025-11-25 authorization §Runtime
 * Insufficient Scope Errors). `scope` names every scope the call needs: the token's own and the
 * missing ones (the spec's recommended approach: a client that re-authorizes with exactly this set
 * loses nothing it had), in the resource's order; `resource_metadata` as on a 401.
 */
export function insufficientScope(resource: ProtectedResource, held: readonly string[], missing: readonly string[]): BearerRefusal {
  const scope = resource.scopes.filter((s) => held.includes(s) || missing.includes(s)).join(' ');
  return {
    ok: false,
    status: 403,
    wwwAuthenticate: `Bearer error="insufficient_scope", scope="${scope}", resource_metadata="${resource.metadataUrl}"`,
    body: { error: 'insufficient_scope', error_description: `The access token lacks the scope ${missing.join(' ')}` },
  };
}
