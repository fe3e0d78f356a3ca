import { randomBytes } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import { AUTHORIZATION_REQUEST_TTL_SECONDS, type AuthorizationRequest, type AuthServerContext, type UpstreamStateRecord } from './context.ts';
import { COOKIE, hostCookie, parseCookies } from './cookies.ts';
import { keys } from './keys.ts';
import { sha256 } from './secrets.ts';

/**
 * Sends the browser to the upstream IdP with a fresh single-use state, nonce and PKCE verifier.
 * The state is bound to this browser (a `__Host-` cookie): a sign-in URL handed to someone else
 * cannot complete in their browser with the consent given in ours (confused deputy, login CSRF).
 */
export async function redirectToUpstream(ctx: AuthServerContext, request: AuthorizationRequest, reply: FastifyReply, cookieHeader: string | undefined) {
  const state = randomBytes(32).toString('base64url');
  const browserId = browserIdOf(cookieHeader) ?? randomBytes(32).toString('base64url');
  reply.header('set-cookie', hostCookie(COOKIE.browser, browserId, BROWSER_COOKIE_TTL_SECONDS));
  const record: UpstreamStateRecord = {
    requestId: request.id,
    codeVerifier: randomBytes(32).toString('base64url'),
    nonce: randomBytes(16).toString('base64url'),
    browserHash: sha256(browserId),
  };
  await ctx.store.set(keys.authorizationRequest(request.id), request, AUTHORIZATION_REQUEST_TTL_SECONDS);
  await ctx.store.set(keys.upstreamState(state), record, AUTHORIZATION_REQUEST_TTL_SECONDS);
  const url = await ctx.idp.authorizationUrl({
    state,
    nonce: record.nonce,
    codeVerifier: record.codeVerifier,
    prompt: request.prompt,
    loginHint: request.loginHint,
    ...(request.downstream ? { extraScopes: request.downstream.scope.split(' ') } : {}),
    ...(request.downstream?.claims ? { claims: request.downstream.claims } : {}),
  });
  return reply.redirect(url.href, 302);
}

const BROWSER_COOKIE_TTL_SECONDS = 30 * 86400;

/** The browser's random id cookie, when present and well-formed. */
export function browserIdOf(cookieHeader: string | undefined): string | undefined {
  const value = parseCookies(cookieHeader).get(COOKIE.browser);
  return value && /^[A-Za-z0-9_-]{43}$/.test(value) ? value : undefined;
}
