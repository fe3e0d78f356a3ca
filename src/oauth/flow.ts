import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import type { UpstreamSignIn } from '../ports/idp.ts';
import type { ClientRecord } from '../ports/records.ts';
import {
  AUTHORIZATION_REQUEST_TTL_SECONDS,
  type AuthorizationRequest,
  type AuthServerContext,
  type CodeRecord,
  type ConsentRecord,
  type UpstreamStateRecord,
} from './context.ts';
import type { Approval } from './consent-cookie.ts';
import { COOKIE, hostCookie, parseCookies } from './cookies.ts';
import { userKeyOf } from './grants.ts';
import { keys } from './keys.ts';
import { consentPage, PAGE_HEADERS } from './pages.ts';
import { randomToken, sha256 } from './secrets.ts';

export const AUTHORIZATION_CODE_PREFIX = 'mcpgw_code_';

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
  });
  return reply.redirect(url.href, 302);
}

/** RFC 6749 §4.1.2 with RFC 9207's `iss`: back to the client's verified redirect_uri. */
export function redirectToClient(
  ctx: AuthServerContext,
  request: Pick<AuthorizationRequest, 'redirectUri' | 'state'>,
  params: Record<string, string>,
  reply: FastifyReply,
) {
  return reply.header('cache-control', 'no-store').redirect(clientRedirectUrl(ctx, request, params).href, 302);
}

export function clientRedirectUrl(
  ctx: AuthServerContext,
  request: Pick<AuthorizationRequest, 'redirectUri' | 'state'>,
  params: Record<string, string>,
): URL {
  const url = new URL(request.redirectUri!);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  if (request.state !== undefined) url.searchParams.set('state', request.state);
  url.searchParams.set('iss', ctx.issuer);
  return url;
}

/** Issues a single-use authorization code for a signed-in, consenting user. */
export async function completeWithCode(
  ctx: AuthServerContext,
  request: AuthorizationRequest,
  signIn: NonNullable<AuthorizationRequest['signIn']>,
  reply: FastifyReply,
) {
  const code = randomToken(AUTHORIZATION_CODE_PREFIX);
  const now = ctx.clock.nowSeconds();
  const record: CodeRecord = {
    grantId: randomUUID(),
    clientId: request.clientId!,
    redirectUri: request.redirectUri!,
    codeChallenge: request.codeChallenge!,
    resource: request.resource!,
    scopes: request.scopes,
    user: signIn.user,
    userKey: userKeyOf(signIn.user),
    upstream: signIn.upstream,
    upstreamExpiresAt: signIn.upstreamExpiresAt,
    issuedAt: now,
    expiresAt: now + ctx.config.tokens.authorizationCodeTtlSeconds,
  };
  await ctx.store.set(keys.code(sha256(code)), record, ctx.config.tokens.authorizationCodeTtlSeconds);
  await ctx.store.delete(keys.authorizationRequest(request.id));
  return redirectToClient(ctx, request, { code }, reply);
}

export function sealSignIn(ctx: AuthServerContext, signIn: UpstreamSignIn): NonNullable<AuthorizationRequest['signIn']> {
  return {
    user: signIn.identity,
    upstream: ctx.sealer.seal(JSON.stringify(signIn.tokens)),
    upstreamExpiresAt: signIn.tokens.expiresAt,
  };
}

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

export function redirectHost(uri: string): string {
  const url = new URL(uri);
  return url.host || `${url.protocol}//`;
}

/**
 * The consent page, with a CSRF token bound to this request and to a random cookie of this
 * browser (double submit, HMAC-signed).
 */
export function renderConsent(ctx: AuthServerContext, request: AuthorizationRequest, client: ClientRecord, reply: FastifyReply) {
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

const BROWSER_COOKIE_TTL_SECONDS = 30 * 86400;

/** The browser's random id cookie, when present and well-formed. */
export function browserIdOf(cookieHeader: string | undefined): string | undefined {
  const value = parseCookies(cookieHeader).get(COOKIE.browser);
  return value && /^[A-Za-z0-9_-]{43}$/.test(value) ? value : undefined;
}

export function browserNonceOf(cookieHeader: string | undefined): string | undefined {
  return parseCookies(cookieHeader).get(COOKIE.csrf);
}
