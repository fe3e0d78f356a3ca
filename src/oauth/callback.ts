import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { SECURITY_EVENT, userFields } from '../audit/events.ts';
import { UpstreamRefusedError, UpstreamUnavailableError, type UserIdentity } from '../ports/idp.ts';
import {
  ACCOUNT_SESSION_TTL_SECONDS,
  AUTHORIZATION_REQUEST_TTL_SECONDS,
  type AuthorizationRequest,
  type AuthServerContext,
  type ConsentRecord,
  type UpstreamStateRecord,
} from './context.ts';
import { COOKIE, hostCookie } from './cookies.ts';
import { consentCovers, rememberConsent } from './approvals.ts';
import { redirectToClient } from './client-redirect.ts';
import { completeWithCode, sealSignIn } from './codes.ts';
import { completeDownstreamConsent } from './downstream-consent.ts';
import { renderConsent } from './consent-page.ts';
import { browserIdOf } from './upstream-redirect.ts';
import { userKeyOf } from './grants.ts';
import { OAuthError } from './errors.ts';
import { keys } from './keys.ts';
import { type Params, param } from './params.ts';
import { constantTimeEqual, sha256 } from './secrets.ts';

const SIGN_IN_FAILED = 'Sign-in failed';

/** GET /callback: the upstream IdP returns the browser here. */
export function registerCallback(app: FastifyInstance, ctx: AuthServerContext) {
  app.get('/callback', async (request, reply) => {
    const query = request.query as Params;
    const state = param(query, 'state');
    // Upstream state: exact, single use (atomic take), ≤ 10 minutes (DESIGN §4).
    const stateRecord = state ? await ctx.store.take<UpstreamStateRecord>(keys.upstreamState(state)) : undefined;
    if (!stateRecord) throw new OAuthError('invalid_request', 'unknown, expired or already used state.', { page: SIGN_IN_FAILED });
    const browserId = browserIdOf(request.headers.cookie);
    if (!browserId || !constantTimeEqual(sha256(browserId), stateRecord.browserHash)) {
      ctx.logger.warn('callback from a browser other than the one sent to sign in');
      throw new OAuthError('invalid_request', 'this sign-in was started in another browser; start again from your application.', { page: SIGN_IN_FAILED });
    }
    const pending = await ctx.store.get<AuthorizationRequest>(keys.authorizationRequest(stateRecord.requestId));
    if (!pending) throw new OAuthError('invalid_request', 'the sign-in request expired; start again.', { page: SIGN_IN_FAILED });

    const signInFailed = (reason: string) =>
      ctx.audit.record({ 'event.name': SECURITY_EVENT.signIn, 'event.outcome': 'failure', 'error.type': reason, 'oauth.client.id': pending.clientId, 'client.address': request.ip });
    const upstreamError = param(query, 'error');
    if (upstreamError) {
      ctx.logger.info({ upstreamError, description: param(query, 'error_description') }, 'upstream sign-in refused');
      signInFailed(upstreamError);
      if (pending.purpose !== 'authorize') throw new OAuthError('access_denied', 'the identity provider refused the sign-in.', { status: 403, page: SIGN_IN_FAILED });
      await ctx.store.delete(keys.authorizationRequest(pending.id));
      return redirectToClient(ctx, pending, { error: 'access_denied', error_description: 'the identity provider refused the sign-in' }, reply);
    }

    let signIn: Awaited<ReturnType<typeof ctx.idp.completeSignIn>>;
    try {
      signIn = await ctx.idp.completeSignIn({
        callbackUrl: new URL(request.url, ctx.issuer),
        state: state!,
        nonce: stateRecord.nonce,
        codeVerifier: stateRecord.codeVerifier,
      });
    } catch (error) {
      if (error instanceof UpstreamUnavailableError) {
        throw new OAuthError('temporarily_unavailable', 'the identity provider cannot be reached; try again.', { page: 'Sign-in unavailable' });
      }
      if (error instanceof UpstreamRefusedError) {
        ctx.logger.warn({ err: error }, 'upstream sign-in rejected');
        signInFailed(error.upstreamError);
        if (pending.purpose !== 'authorize') throw new OAuthError('access_denied', error.message, { status: 403, page: SIGN_IN_FAILED });
        await ctx.store.delete(keys.authorizationRequest(pending.id));
        return redirectToClient(ctx, pending, { error: 'access_denied', error_description: error.message }, reply);
      }
      throw error;
    }

    const userKey = userKeyOf(signIn.identity);
    ctx.audit.record({
      'event.name': SECURITY_EVENT.signIn,
      'event.outcome': 'success',
      ...userFields(signIn.identity, userKey),
      'oauth.client.id': pending.clientId,
      'client.address': request.ip,
    });
    await startAccountSession(ctx, userKey, signIn.identity, reply);
    if (pending.purpose === 'account') {
      await ctx.store.delete(keys.authorizationRequest(pending.id));
      return reply.redirect('/account', 302);
    }
    if (pending.purpose === 'downstream-consent') return completeDownstreamConsent(ctx, pending, signIn, reply);
    const sealed = sealSignIn(ctx, signIn);
    const client = await ctx.clients.find(pending.clientId);
    const remembered = await ctx.store.get<ConsentRecord>(keys.consent(userKey, client.clientId));
    if (!consentCovers(remembered, pending)) {
      // A code goes to a client only for a user who approved it while signed in as themselves:
      // an approval given before sign-in (or remembered by a cookie) may come from another
      // browser whose cookies were planted in this one, so this user is asked now, by name.
      const withSignIn = { ...pending, signIn: sealed };
      await ctx.store.set(keys.authorizationRequest(pending.id), withSignIn, AUTHORIZATION_REQUEST_TTL_SECONDS);
      return renderConsent(ctx, withSignIn, client, reply, remembered?.resources?.[pending.resource!]);
    }
    await rememberConsent(ctx, userKey, pending, client);
    return completeWithCode(ctx, pending, sealed, reply);
  });
}

/** Signs the browser in at the gateway so /account works without another upstream round trip. */
async function startAccountSession(ctx: AuthServerContext, userKey: string, user: UserIdentity, reply: FastifyReply) {
  const session = randomBytes(32).toString('base64url');
  await ctx.store.set(keys.accountSession(sha256(session)), { userKey, user }, ACCOUNT_SESSION_TTL_SECONDS);
  reply.header('set-cookie', hostCookie(COOKIE.session, session, ACCOUNT_SESSION_TTL_SECONDS));
}
