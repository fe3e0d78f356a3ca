import { OAuthError } from './errors.ts';
import { findResource, type ProtectedResource } from './resources.ts';

/**
 * The resource a token without a user-approved request is for: the `resource` parameter
 * (RFC 8707 §2, already checked to be ours), else the first backend.
 */
export function resourceOrDefault(resources: readonly ProtectedResource[], resource: string | undefined): ProtectedResource {
  return (resource === undefined ? undefined : findResource(resources, resource)) ?? resources[0]!;
}

/**
 * Scopes of a token no consent page approved: what was requested (all when none was), within
 * every ceiling (the resource's scopes, the client's, an assertion's). Nothing left is
 * invalid_scope (RFC 6749 §5.2), never a token without scopes.
 */
export function narrowScopes(requested: readonly string[] | undefined, ...ceilings: (readonly string[] | undefined)[]): string[] {
  let scopes = [...(requested ?? ceilings.find((c) => c !== undefined) ?? [])];
  for (const ceiling of ceilings) if (ceiling !== undefined) scopes = scopes.filter((s) => ceiling.includes(s));
  if (scopes.length === 0) throw new OAuthError('invalid_scope', 'none of the requested scopes can be granted');
  return scopes;
}
