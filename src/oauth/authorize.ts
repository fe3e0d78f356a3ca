import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ClientRecord } from '../ports/records.ts';
import { approvalCookieWith, hasAnyApprovalFor, hasApprovalCookie } from './consent-cookie.ts';
import { AUTHORIZATION_REQUEST_TTL_SECONDS, type AuthorizationRequest, type AuthServerContext } from './context.ts';
import { OAuthError } from './errors.ts';
import { keys } from './keys.ts';
import { approvalOf } from './approvals.ts';
import { clientRedirectUrl, redirectHost, redirectToClient } from './client-redirect.ts';
import { renderConsent } from './consent-page.ts';
import { redirectToUpstream } from './upstream-redirect.ts';
import { errorReturnPage, PAGE_HEADERS } from './pages.ts';
import { type Params, param, splitScopes } from './params.ts';
import { isValidChallenge } from './pkce.ts';
import { createRateLimit } from './rate-limit.ts';
import { redirectUriMatches } from './redirect-uri.ts';
import { findResource } from './resources.ts';

/** GET /authorize (OAuth 2.1 §4.1.1), consent before any upstream redirect (MCP security best practices). */
export function registerAuthorize(app: FastifyInstance, ctx: AuthServerContext) {
  const rateLimit = createRateLimit(ctx, 'authorization', ctx.config.rateLimits.authorizationsPerMinute, 60);
  app.get('/authorize', async (request, reply) => {
    await rateLimit(request);
    const query = request.query as Params;
    // Until client and redirect_uri are verified, errors are shown, never redirected (RFC 6749 §4.1.2.1).
    let client: ClientRecord;
    let redirectUri: string;
    try {
      client = await ctx.clients.find(param(query, 'client_id'));
      // RFC 6749 §4.1.2.1 (unauthorized_client), RFC 7591 §2 grant_types: a client registered for
      // other grants only (client_credentials, token exchange) never starts a sign-in; its
      // redirect URIs, if any, are not for this endpoint, so this too is shown, not redirected.
      if (!client.grantTypes.includes('authorization_code')) {
        throw new OAuthError('unauthorized_client', 'client is not registered for grant_type authorization_code');
      }
      redirectUri = verifiedRedirectUri(client, param(query, 'redirect_uri'));
    } catch (error) {
      if (!(error instanceof OAuthError) || error.status >= 500) throw error;
      throw new OAuthError(error.code, error.description, { status: 400, page: 'Sign-in request refused' });
    }
    await ctx.clients.keepAlive(client, false);
    const state = typeof query['state'] === 'string' ? query['state'] : undefined;
    let authorizationRequest: AuthorizationRequest;
    try {
      authorizationRequest = parseRequest(ctx, query, client, redirectUri);
    } catch (error) {
      if (!(error instanceof OAuthError) || error.status >= 500) throw error;
      const params = { error: error.code, error_description: error.description };
      // RFC 9700 §4.11.2: anyone can register a client, so only a client this browser approved
      // before gets an automatic error redirect; otherwise the user sees the error and a link.
      if (hasAnyApprovalFor(ctx.signer, request.headers.cookie, client.clientId, ctx.clock.nowSeconds())) {
        return redirectToClient(ctx, { redirectUri, state }, params, reply);
      }
      const target = clientRedirectUrl(ctx, { redirectUri, state }, params);
      return reply
        .code(400)
        .headers(PAGE_HEADERS)
        .send(errorReturnPage('Sign-in request refused', `${error.code}: ${error.description}`, target.href, redirectHost(redirectUri)));
    }
    return continueAuthorization(ctx, authorizationRequest, client, request, reply);
  });
}

function verifiedRedirectUri(client: ClientRecord, requested: string | undefined): string {
  if (requested === undefined) {
    // OAuth 2.1 §4.1.1: optional only when exactly one is registered.
    if (client.redirectUris.length === 1) return client.redirectUris[0]!;
    throw new OAuthError('invalid_request', 'redirect_uri is required');
  }
  if (!redirectUriMatches(client.redirectUris, requested)) {
    throw new OAuthError('invalid_request', 'redirect_uri is not registered for this client');
  }
  return requested;
}

function parseRequest(ctx: AuthServerContext, query: Params, client: ClientRecord, redirectUri: string): AuthorizationRequest {
  const state = param(query, 'state');
  const responseType = param(query, 'response_type');
  if (responseType !== 'code') {
    throw new OAuthError('unsupported_response_type', 'response_type must be code');
  }
  const challenge = param(query, 'code_challenge');
  const method = param(query, 'code_challenge_method');
  // OAuth 2.1 §4.1.1 and MCP authorization: PKCE is mandatory, and only S256 is offered.
  if (!challenge) throw new OAuthError('invalid_request', 'code_challenge is required (PKCE)');
  if (method !== 'S256') throw new OAuthError('invalid_request', 'code_challenge_method must be S256');
  if (!isValidChallenge(challenge)) throw new OAuthError('invalid_request', 'code_challenge must be 43 base64url characters');
  // RFC 8707 §2: the resource must be one of ours; MCP clients always send it.
  const resourceParam = param(query, 'resource');
  const resource = resourceParam ? findResource(ctx.resources, resourceParam) : ctx.resources[0];
  if (!resource) throw new OAuthError('invalid_target', `resource ${resourceParam} is not served by this gateway`);
  const requested = splitScopes(param(query, 'scope'));
  const unknown = (requested ?? []).filter((s) => !resource.scopes.includes(s));
  if (unknown.length > 0) throw new OAuthError('invalid_scope', `unknown scope: ${unknown.join(' ')}`);
  const prompt = param(query, 'prompt');
  const loginHint = param(query, 'login_hint');
  return {
    id: randomUUID(),
    purpose: 'authorize',
    clientId: client.clientId,
    redirectUri,
    state,
    codeChallenge: challenge,
    scopes: requested && requested.length > 0 ? requested : resource.defaultScopes,
    resource: resource.resource,
    // DESIGN §6: never prompt=consent upstream; `login` and `select_account` pass through.
    prompt: prompt === 'login' || prompt === 'select_account' ? prompt : undefined,
    loginHint: loginHint && loginHint.length <= 256 ? loginHint : undefined,
    createdAt: ctx.clock.nowSeconds(),
  };
}

async function continueAuthorization(
  ctx: AuthServerContext,
  authorizationRequest: AuthorizationRequest,
  client: ClientRecord,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  const now = ctx.clock.nowSeconds();
  const cookie = request.headers.cookie;
  const approval = approvalOf(authorizationRequest);
  if (hasApprovalCookie(ctx.signer, cookie, approval, now)) {
    // Approved earlier in this browser; the server-side approval is checked again after sign-in.
    reply.header('set-cookie', approvalCookieWith(ctx.signer, cookie, approval, now));
    return redirectToUpstream(ctx, authorizationRequest, reply, cookie);
  }
  await ctx.store.set(keys.authorizationRequest(authorizationRequest.id), authorizationRequest, AUTHORIZATION_REQUEST_TTL_SECONDS);
  return renderConsent(ctx, authorizationRequest, client, reply);
}
