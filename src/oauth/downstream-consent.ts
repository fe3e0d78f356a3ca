import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Clock } from '../ports/clock.ts';
import type { UpstreamSignIn } from '../ports/idp.ts';
import type { GrantRecord } from '../ports/records.ts';
import type { AuthorizationRequest, AuthServerContext } from './context.ts';
import { OAuthError } from './errors.ts';
import { userKeyOf } from './grants.ts';
import { keys } from './keys.ts';
import { escapeHtml, PAGE_HEADERS, page } from './pages.ts';
import { type Params, param } from './params.ts';
import { createRateLimit } from './rate-limit.ts';
import type { Signer } from './secrets.ts';
import { redirectToUpstream } from './upstream-redirect.ts';

export const DOWNSTREAM_CONSENT_PATH = '/consent/downstream';
/** A consent link works this long after the refused call that made it. */
const CONSENT_LINK_TTL_SECONDS = 600;
const LINK_REFUSED = 'Consent link refused';
const CONSENT_FAILED = 'Consent not recorded';

/** What a consent link carries, HMAC-signed (no Store entry): `use` keeps it apart from the cookies the same key signs. */
interface ConsentLinkPayload {
  use: 'downstream-consent';
  grantId: string;
  scope: string;
  /** Entra's claims challenge, passed on to its authorize endpoint. */
  claims?: string;
  /** The elicitation's id (MCP 2025-11-25 client/elicitation §URL Mode Elicitation Requests). */
  id: string;
  exp: number;
}

export interface ConsentLink {
  url: string;
  elicitationId: string;
}

/**
 * The link that lets the user of grant `grantId` give the consent (or do the interaction) the
 * upstream asked for `scope`. It names no user and grants nothing by itself (MCP client/elicitation
 * §Safe URL Handling): it only starts an upstream sign-in, and what that sign-in yields is kept
 * only when the user who signs in is the grant's (§Phishing).
 */
export function consentLink(deps: { signer: Signer; clock: Clock; issuer: string }, grantId: string, scope: string, claims?: string): ConsentLink {
  const id = randomUUID();
  const payload: ConsentLinkPayload = { use: 'downstream-consent', grantId, scope, ...(claims ? { claims } : {}), id, exp: deps.clock.nowSeconds() + CONSENT_LINK_TTL_SECONDS };
  const url = new URL(DOWNSTREAM_CONSENT_PATH, deps.issuer);
  url.searchParams.set('request', deps.signer.sign(payload));
  return { url: url.href, elicitationId: id };
}

/**
 * GET /consent/downstream?request=…: sends the browser to the upstream authorize endpoint with the
 * sign-in's scopes plus the missing one (Entra: the interactive request AADSTS65001 asks for; its
 * consent prompt, or MFA for interaction_required, appears there; no `prompt=consent`, DESIGN §6),
 * and Entra's claims challenge as `claims` when its refusal carried one (claims-challenge.md).
 * /callback finishes it (completeDownstreamConsent).
 */
export function registerDownstreamConsent(app: FastifyInstance, ctx: AuthServerContext) {
  const rateLimit = createRateLimit(ctx, 'authorization', ctx.config.rateLimits.authorizationsPerMinute, 60);
  app.get(DOWNSTREAM_CONSENT_PATH, async (request, reply) => {
    await rateLimit(request);
    const now = ctx.clock.nowSeconds();
    const link = ctx.signer.verify<ConsentLinkPayload>(param(request.query as Params, 'request'));
    if (link?.use !== 'downstream-consent' || typeof link.grantId !== 'string' || typeof link.scope !== 'string') {
      throw new OAuthError('invalid_request', 'this consent link is not valid.', { page: LINK_REFUSED });
    }
    if (link.exp <= now) throw new OAuthError('invalid_request', 'this consent link has expired; call the tool again for a new one.', { page: LINK_REFUSED });
    const grant = await liveGrant(ctx, link.grantId);
    const pending: AuthorizationRequest = {
      id: randomUUID(),
      purpose: 'downstream-consent',
      scopes: [],
      downstream: { grantId: link.grantId, scope: link.scope, ...(typeof link.claims === 'string' ? { claims: link.claims } : {}) },
      // The account the grant is for (Entra: skips the account picker; another account is refused at /callback).
      ...(grant.user.preferredUsername ? { loginHint: grant.user.preferredUsername } : {}),
      createdAt: now,
    };
    return redirectToUpstream(ctx, pending, reply, request.headers.cookie);
  });
}

/**
 * /callback of a downstream consent: the user who signed in must be the grant's (MCP client/elicitation
 * §Phishing: tokens are never bound to another user's grant); then the sign-in's upstream tokens —
 * a refresh token now good for the consented scope — replace the grant's, so the next exchange succeeds.
 */
export async function completeDownstreamConsent(ctx: AuthServerContext, pending: AuthorizationRequest, signIn: UpstreamSignIn, reply: FastifyReply) {
  await ctx.store.delete(keys.authorizationRequest(pending.id));
  const { grantId, scope } = pending.downstream!;
  const grant = await liveGrant(ctx, grantId);
  if (userKeyOf(signIn.identity) !== grant.userKey) {
    ctx.logger.warn({ grantId }, 'downstream consent completed by another user than the grant\'s: not kept');
    throw new OAuthError('access_denied', 'you signed in as another user than the one this consent link was made for; nothing was changed.', {
      status: 403,
      page: CONSENT_FAILED,
    });
  }
  grant.upstream = ctx.sealer.seal(JSON.stringify(signIn.tokens));
  grant.upstreamExpiresAt = signIn.tokens.expiresAt;
  await ctx.store.set(keys.grant(grantId), grant, grant.expiresAt - ctx.clock.nowSeconds());
  ctx.logger.info({ grantId, scope }, 'downstream consent recorded: the grant holds the new upstream sign-in');
  return reply
    .headers(PAGE_HEADERS)
    .send(page('Consent recorded', `<h1 id="done">Done</h1><p>Access to <code>${escapeHtml(scope)}</code> is now granted. Return to your application and try again.</p>`));
}

async function liveGrant(ctx: AuthServerContext, grantId: string): Promise<GrantRecord> {
  const grant = await ctx.store.get<GrantRecord>(keys.grant(grantId));
  if (!grant || grant.expiresAt <= ctx.clock.nowSeconds()) {
    throw new OAuthError('invalid_request', 'the sign-in this link was made for has ended; sign in again from your application.', { page: LINK_REFUSED });
  }
  return grant;
}
