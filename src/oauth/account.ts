import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { SECURITY_EVENT, userFields } from '../audit/events.ts';
import type { GrantRecord } from '../ports/records.ts';
import { approvalCookieWithout } from './consent-cookie.ts';
import type { AuthServerContext, ConsentRecord } from './context.ts';
import { COOKIE, parseCookies } from './cookies.ts';
import { redirectToUpstream } from './upstream-redirect.ts';
import { OAuthError } from './errors.ts';
import { keys } from './keys.ts';
import { type AccountClientView, accountPage, PAGE_HEADERS } from './pages.ts';
import { type Params, param } from './params.ts';
import { createRateLimit } from './rate-limit.ts';
import { constantTimeEqual, sha256 } from './secrets.ts';

type AccountSession = Pick<GrantRecord, 'userKey' | 'user'>;

/**
 * /account: the signed-in user's approved clients, each with a Revoke button that ends the
 * consent and every grant of that client for that user.
 */
export function registerAccount(app: FastifyInstance, ctx: AuthServerContext) {
  const rateLimit = createRateLimit(ctx, 'authorization', ctx.config.rateLimits.authorizationsPerMinute, 60);
  app.get('/account', async (request, reply) => {
    const session = await sessionOf(ctx, request);
    if (!session) {
      await rateLimit(request);
      // Not signed in at the gateway: sign in upstream, then come back here.
      return redirectToUpstream(
        ctx,
        { id: randomUUID(), purpose: 'account', scopes: [], createdAt: ctx.clock.nowSeconds() },
        reply,
        request.headers.cookie,
      );
    }
    const live = await ctx.grants.liveGrantsByClient(session.userKey);
    const clients: AccountClientView[] = [];
    for (const clientId of await ctx.store.members(keys.userConsents(session.userKey))) {
      const consent = await ctx.store.get<ConsentRecord>(keys.consent(session.userKey, clientId));
      if (consent) clients.push({ ...consent, liveGrants: live.get(clientId)?.count ?? 0 });
    }
    // Access granted without this user's consent page (an enterprise IdP's ID-JAG): listed, and
    // revocable, like any other; it has no redirect.
    for (const [clientId, { count, since }] of live) {
      if (clients.some((c) => c.clientId === clientId)) continue;
      const client = await ctx.clients.find(clientId).catch(() => undefined);
      clients.push({ clientId, clientName: client?.clientName ?? clientId, redirectHost: '(no redirect: granted by your organisation)', approvedAt: since, liveGrants: count });
    }
    clients.sort((a, b) => (b.lastUsedAt ?? b.approvedAt) - (a.lastUsedAt ?? a.approvedAt));
    const name = session.user.name ?? session.user.preferredUsername ?? session.user.subject;
    return reply.headers(PAGE_HEADERS).send(accountPage(name, clients, accountCsrf(ctx, request)!));
  });

  app.post('/account/revoke', async (request, reply) => {
    const session = await sessionOf(ctx, request);
    if (!session) {
      throw new OAuthError('invalid_request', 'sign in at /account first.', { status: 401, page: 'Not signed in' });
    }
    const body = request.body as Params;
    const csrf = param(body, 'csrf');
    const expected = accountCsrf(ctx, request);
    if (!csrf || !expected || !constantTimeEqual(csrf, expected)) {
      throw new OAuthError('invalid_request', 'missing or invalid CSRF token.', { status: 403, page: 'Refused' });
    }
    const clientId = param(body, 'client_id');
    if (!clientId) throw new OAuthError('invalid_request', 'client_id is required.', { page: 'Refused' });
    await ctx.store.delete(keys.consent(session.userKey, clientId));
    await ctx.store.removeFromSet(keys.userConsents(session.userKey), clientId);
    const revoked = await ctx.grants.revokeUserClientGrants(session.userKey, clientId);
    ctx.audit.record({
      'event.name': SECURITY_EVENT.revocation,
      'gateway.revoked_by': 'user',
      ...userFields(session.user, session.userKey),
      'oauth.client.id': clientId,
      'gateway.grants_revoked': revoked,
      'client.address': request.ip,
    });
    ctx.logger.info({ clientId, revoked }, 'client access revoked by the user');
    reply.header('set-cookie', approvalCookieWithout(ctx.signer, request.headers.cookie, clientId, ctx.clock.nowSeconds()));
    return reply.redirect('/account', 303);
  });
}

async function sessionOf(ctx: AuthServerContext, request: FastifyRequest): Promise<AccountSession | undefined> {
  const token = parseCookies(request.headers.cookie).get(COOKIE.session);
  return token ? ctx.store.get<AccountSession>(keys.accountSession(sha256(token))) : undefined;
}

/** The session cookie is HttpOnly and SameSite=Lax; the CSRF token is derived from it. */
function accountCsrf(ctx: AuthServerContext, request: FastifyRequest): string | undefined {
  const token = parseCookies(request.headers.cookie).get(COOKIE.session);
  return token ? ctx.signer.mac(`account|${token}`) : undefined;
}
