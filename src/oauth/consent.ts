import type { FastifyInstance } from 'fastify';
import { SECURITY_EVENT, userFields } from '../audit/events.ts';
import { approvalCookieWith } from './consent-cookie.ts';
import type { AuthorizationRequest, AuthServerContext } from './context.ts';
import { approvalOf, rememberConsent } from './approvals.ts';
import { redirectToClient } from './client-redirect.ts';
import { completeWithCode } from './codes.ts';
import { browserNonceOf, consentCsrf } from './consent-page.ts';
import { redirectToUpstream } from './upstream-redirect.ts';
import { userKeyOf } from './grants.ts';
import { OAuthError } from './errors.ts';
import { keys } from './keys.ts';
import { type Params, param } from './params.ts';
import { constantTimeEqual } from './secrets.ts';

const CONSENT_EXPIRED = 'Consent request expired';

/** POST /consent: the Allow / Deny form of the consent page (one form, `decision=allow|deny`). */
export function registerConsent(app: FastifyInstance, ctx: AuthServerContext) {
  app.post('/consent', async (request, reply) => {
    const body = request.body as Params;
    const requestId = param(body, 'request');
    const pending = requestId ? await ctx.store.get<AuthorizationRequest>(keys.authorizationRequest(requestId)) : undefined;
    if (pending?.purpose !== 'authorize') {
      throw new OAuthError('invalid_request', 'start again from your application.', { page: CONSENT_EXPIRED });
    }
    // CSRF: the token must match this request and this browser's nonce cookie.
    const nonce = browserNonceOf(request.headers.cookie);
    const csrf = param(body, 'csrf');
    if (!nonce || !csrf || !constantTimeEqual(csrf, consentCsrf(ctx, pending, nonce))) {
      throw new OAuthError('invalid_request', 'missing or invalid CSRF token; reload the page and try again.', { status: 403, page: 'Consent refused' });
    }
    const decision = param(body, 'decision');
    if (decision === 'allow' || decision === 'deny') {
      ctx.audit.record({
        'event.name': SECURITY_EVENT.consent,
        'consent.decision': decision,
        'consent.phase': pending.signIn ? 'signed_in' : 'before_sign_in',
        ...(pending.signIn ? userFields(pending.signIn.user, userKeyOf(pending.signIn.user)) : {}),
        'oauth.client.id': pending.clientId,
        'oauth.scope': pending.scopes.join(' '),
        'oauth.resource': pending.resource,
        'client.address': request.ip,
      });
    }
    if (decision === 'deny') {
      await ctx.store.delete(keys.authorizationRequest(pending.id));
      return redirectToClient(ctx, pending, { error: 'access_denied', error_description: 'the user denied access' }, reply);
    }
    if (decision !== 'allow') {
      throw new OAuthError('invalid_request', 'decision must be allow or deny.', { page: 'Consent refused' });
    }
    const client = await ctx.clients.find(pending.clientId);
    const now = ctx.clock.nowSeconds();
    reply.header('set-cookie', approvalCookieWith(ctx.signer, request.headers.cookie, approvalOf(pending), now));
    if (pending.signIn) {
      // Consent asked after sign-in (no remembered approval for this user): finish now, once —
      // the request is taken atomically so a double submit cannot mint two codes.
      const taken = await ctx.store.take<AuthorizationRequest>(keys.authorizationRequest(pending.id));
      if (!taken?.signIn) {
        throw new OAuthError('invalid_request', 'start again from your application.', { page: CONSENT_EXPIRED });
      }
      await rememberConsent(ctx, userKeyOf(taken.signIn.user), taken, client);
      return completeWithCode(ctx, taken, taken.signIn, reply);
    }
    return redirectToUpstream(ctx, pending, reply, request.headers.cookie);
  });
}
