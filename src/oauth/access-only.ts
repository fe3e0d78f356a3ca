import { SECURITY_EVENT, userFields } from '../audit/events.ts';
import type { AuthServerContext } from './context.ts';
import type { AccessOnlyTokens, NewGrant } from './grants.ts';

/**
 * A grant that ends with its one access token (no refresh token: client_credentials, ID-JAG, an
 * Entra workload's assertion), recorded in the audit trail like any grant.
 */
export async function issueAccessOnly(
  ctx: AuthServerContext,
  grant: NewGrant,
  issued: { grantType: string; address: string; assertionIssuer?: string; untilAt?: number },
): Promise<AccessOnlyTokens> {
  const { grant: record, tokens } = await ctx.grants.createAccessOnly(grant, issued.untilAt);
  ctx.audit.record({
    'event.name': SECURITY_EVENT.grantIssued,
    ...userFields(grant.user, grant.userKey),
    'oauth.grant_type': issued.grantType,
    ...(issued.assertionIssuer ? { 'gateway.assertion.issuer': issued.assertionIssuer } : {}),
    'oauth.client.id': grant.clientId,
    'oauth.grant.id': record.grantId,
    'oauth.scope': tokens.scope,
    'oauth.resource': grant.resource,
    'client.address': issued.address,
  });
  return tokens;
}
