import type { UserIdentity } from '../ports/idp.ts';

/**
 * Field names of the audit trail's security events (docs/security.md, Audit trail). OpenTelemetry's
 * where one exists (`user.*`, `client.address`); `oauth.client.*` and `gateway.*` are ours.
 */
export const SECURITY_EVENT = {
  signIn: 'gateway.sign_in',
  consent: 'gateway.consent',
  grantIssued: 'gateway.grant.issued',
  refresh: 'gateway.token.refresh',
  refreshReuse: 'gateway.refresh_token.reused',
  codeReplay: 'gateway.code.replayed',
  revocation: 'gateway.revocation',
  rateLimited: 'gateway.rate_limited',
} as const;

/** The user fields of a record. */
export function userFields(user: UserIdentity, userKey: string): Record<string, unknown> {
  return addUserFields({}, user, userKey);
}

/** The user fields written into `fields` (the MCP path builds each record as one object). */
export function addUserFields(fields: Record<string, unknown>, user: UserIdentity, userKey: string): Record<string, unknown> {
  fields['user.id'] = userKey;
  fields['user.name'] = user.preferredUsername;
  fields['user.full_name'] = user.name;
  if (user.tenantId) fields['user.tenant.id'] = user.tenantId;
  return fields;
}
