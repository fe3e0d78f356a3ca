import type { ClientRecord } from '../ports/records.ts';
import type { Approval } from './consent-cookie.ts';
import type { AuthorizationRequest, AuthServerContext, ConsentRecord } from './context.ts';
import { redirectHost } from './client-redirect.ts';
import { keys } from './keys.ts';

/** Records (or refreshes) the server-side approval of `client` by `userKey`. */
export async function rememberConsent(ctx: AuthServerContext, userKey: string, request: AuthorizationRequest, client: ClientRecord) {
  const key = keys.consent(userKey, client.clientId);
  const now = ctx.clock.nowSeconds();
  const existing = await ctx.store.get<ConsentRecord>(key);
  const record: ConsentRecord = {
    clientId: client.clientId,
    clientName: client.clientName ?? client.clientId,
    redirectHost: redirectHost(request.redirectUri!),
    resources: {
      ...existing?.resources,
      [request.resource!]: [...new Set([...(existing?.resources?.[request.resource!] ?? []), ...request.scopes])],
    },
    approvedAt: existing?.approvedAt ?? now,
    lastUsedAt: now,
  };
  await ctx.store.set(key, record);
  await ctx.store.addToSet(keys.userConsents(userKey), client.clientId);
}

/** The approval a consent page shows for this request. */
export function approvalOf(request: AuthorizationRequest): Approval {
  return { clientId: request.clientId!, redirectUri: request.redirectUri!, resource: request.resource!, scopes: request.scopes };
}

/** Whether a remembered approval covers this request's resource and every scope it asks for. */
export function consentCovers(consent: ConsentRecord | undefined, request: Pick<AuthorizationRequest, 'resource' | 'scopes'>): boolean {
  const approved = consent?.resources?.[request.resource!];
  return approved !== undefined && request.scopes.every((scope) => approved.includes(scope));
}
