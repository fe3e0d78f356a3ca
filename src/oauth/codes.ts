import { randomUUID } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import type { UpstreamSignIn } from '../ports/idp.ts';
import type { SignedInUser } from '../ports/records.ts';
import { redirectToClient } from './client-redirect.ts';
import type { AuthorizationRequest, AuthServerContext, CodeRecord } from './context.ts';
import { userKeyOf } from './grants.ts';
import { keys } from './keys.ts';
import { randomToken, sha256 } from './secrets.ts';

export const AUTHORIZATION_CODE_PREFIX = 'mcpgw_code_';

/** Issues a single-use authorization code for a signed-in, consenting user. */
export async function completeWithCode(
  ctx: AuthServerContext,
  request: AuthorizationRequest,
  signIn: SignedInUser,
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

export function sealSignIn(ctx: AuthServerContext, signIn: UpstreamSignIn): SignedInUser {
  return {
    user: signIn.identity,
    upstream: ctx.sealer.seal(JSON.stringify(signIn.tokens)),
    upstreamExpiresAt: signIn.tokens.expiresAt,
  };
}
