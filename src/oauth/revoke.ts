import type { FastifyInstance } from 'fastify';
import { SECURITY_EVENT } from '../audit/events.ts';
import { authenticateRevokingClient } from './client-auth.ts';
import type { AuthServerContext } from './context.ts';
import { OAuthError } from './errors.ts';
import { type Params, param, requiredParam, requireForm } from './params.ts';
import { createRateLimit } from './rate-limit.ts';

/** POST /revoke (RFC 7009): 200 for revoked and for unknown tokens alike (§2.2). */
export function registerRevoke(app: FastifyInstance, ctx: AuthServerContext) {
  // One budget with /token (same counter): both authenticate clients and look up tokens.
  const rateLimit = createRateLimit(ctx, 'token', ctx.config.rateLimits.tokenRequestsPerMinute, 60);
  app.post('/revoke', async (request, reply) => {
    await rateLimit(request);
    requireForm(request.headers['content-type'], 'revocation');
    const body = request.body as Params;
    const token = requiredParam(body, 'token');
    const hint = param(body, 'token_type_hint');
    if (hint !== undefined && hint !== 'access_token' && hint !== 'refresh_token') {
      throw new OAuthError('unsupported_token_type', `token_type_hint ${hint} is not supported`);
    }
    const clientId = await authenticateRevokingClient(ctx, request);
    const revoked = await ctx.grants.revokeToken(token, clientId);
    if (revoked) {
      ctx.audit.record({
        'event.name': SECURITY_EVENT.revocation,
        'gateway.revoked_by': 'client',
        'oauth.token.type': revoked.kind,
        'oauth.client.id': clientId,
        'oauth.grant.id': revoked.grantId,
        'client.address': request.ip,
      });
    }
    return reply.header('cache-control', 'no-store').code(200).send();
  });
}
