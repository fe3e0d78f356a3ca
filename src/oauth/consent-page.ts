import { randomBytes } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import type { ClientRecord } from '../ports/records.ts';
import { redirectHost } from './client-redirect.ts';
import { AUTHORIZATION_REQUEST_TTL_SECONDS, type AuthorizationRequest, type AuthServerContext } from './context.ts';
import { COOKIE, hostCookie, parseCookies } from './cookies.ts';
import { userKeyOf } from './grants.ts';
import { consentPage, PAGE_HEADERS } from './pages.ts';

/**
 * The consent page, with a CSRF token bound to this request and to a random cookie of this
 * browser (double submit, HMAC-signed). `approvedBefore`: the scopes this user allowed this client
 * on this resource before; the others are shown as added (a step-up asks for more).
 */
export function renderConsent(
  ctx: AuthServerContext,
  request: AuthorizationRequest,
  client: ClientRecord,
  reply: FastifyReply,
  approvedBefore: readonly string[] = [],
) {
  const browserNonce = randomBytes(16).toString('base64url');
  const resource = ctx.resources.find((r) => r.resource === request.resource);
  reply.header('set-cookie', hostCookie(COOKIE.csrf, browserNonce, AUTHORIZATION_REQUEST_TTL_SECONDS));
  return reply
    .code(200)
    .headers(PAGE_HEADERS)
    .send(
      consentPage({
        requestId: request.id,
        csrf: consentCsrf(ctx, request, browserNonce),
        clientName: client.clientName ?? client.clientId,
        clientId: client.clientId,
        redirectHost: redirectHost(request.redirectUri!),
        scopes: request.scopes,
        addedScopes: approvedBefore.length > 0 ? request.scopes.filter((s) => !approvedBefore.includes(s)) : [],
        resource: resource?.resource ?? request.resource ?? '',
        userName: request.signIn?.user.name ?? request.signIn?.user.preferredUsername,
      }),
    );
}

/**
 * Bound to the request, to this browser's nonce cookie and to the signed-in user: a token taken
 * from the pre-sign-in page of a request cannot confirm that request once a user has signed in.
 */
export function consentCsrf(ctx: AuthServerContext, request: Pick<AuthorizationRequest, 'id' | 'signIn'>, browserNonce: string): string {
  const user = request.signIn ? userKeyOf(request.signIn.user) : '';
  return ctx.signer.mac(`consent|${request.id}|${user}|${browserNonce}`);
}

export function browserNonceOf(cookieHeader: string | undefined): string | undefined {
  return parseCookies(cookieHeader).get(COOKIE.csrf);
}
