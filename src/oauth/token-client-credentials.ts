import type { UserIdentity } from '../ports/idp.ts';
import type { ClientRecord } from '../ports/records.ts';
import { issueAccessOnly } from './access-only.ts';
import type { AuthServerContext } from './context.ts';
import { OAuthError } from './errors.ts';
import { narrowScopes, resourceOrDefault } from './grant-scopes.ts';
import type { AccessOnlyTokens } from './grants.ts';

/**
 * client_credentials (OAuth 2.1 §4.2; MCP OAuth Client Credentials extension): a pre-registered
 * confidential client, already authenticated, gets a token for itself as a workload principal
 * with its configured roles; no refresh token (§4.2.2).
 */
export async function clientCredentialsGrant(
  ctx: AuthServerContext,
  client: ClientRecord,
  request: { scopes?: string[]; resource?: string; address: string },
): Promise<AccessOnlyTokens> {
  const configured = ctx.configuredClients.get(client.clientId);
  if (!configured || client.tokenEndpointAuthMethod === 'none') {
    throw new OAuthError('unauthorized_client', 'client_credentials is for pre-registered confidential clients');
  }
  const resource = resourceOrDefault(ctx.resources, request.resource);
  const scopes = narrowScopes(request.scopes, resource.scopes, configured.scopes);
  const user: UserIdentity = {
    kind: 'workload',
    issuer: ctx.issuer,
    subject: client.clientId,
    name: client.clientName,
    roles: [...configured.roles],
    groups: [],
  };
  const userKey = `client:${client.clientId}`;
  return issueAccessOnly(
    ctx,
    { user, userKey, clientId: client.clientId, scopes, resource: resource.resource },
    { grantType: 'client_credentials', address: request.address },
  );
}
