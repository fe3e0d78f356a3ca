import { randomBytes, randomUUID } from 'node:crypto';
import type { OAuthClientInformationFullSchema } from '@modelcontextprotocol/core';
import type { FastifyInstance } from 'fastify';
import type { z } from 'zod';
import type { AuthServerContext } from './context.ts';
import { OAuthError } from './errors.ts';
import { createRateLimit } from './rate-limit.ts';
import { sha256 } from './secrets.ts';

/** POST /register: Dynamic Client Registration (RFC 7591), kept for clients without CIMD. */
export function registerRegistration(app: FastifyInstance, ctx: AuthServerContext) {
  const rateLimit = createRateLimit(ctx, 'registration', ctx.config.rateLimits.registrationsPerHour, 3600);
  const dailyLimit = createRateLimit(ctx, 'registration', ctx.config.rateLimits.registrationsPerDay, 86400, 'gateway');
  app.post('/register', async (request, reply) => {
    if (!ctx.config.clientRegistration.dynamic) {
      throw new OAuthError('invalid_request', 'dynamic client registration is disabled; use a client ID metadata document');
    }
    await rateLimit(request);
    await dailyLimit(request);
    if (!request.headers['content-type']?.toLowerCase().startsWith('application/json')) {
      throw new OAuthError('invalid_client_metadata', 'registration requests must be application/json (RFC 7591 §3.1)');
    }
    const metadata = request.body as Record<string, unknown>;
    const method = typeof metadata === 'object' && metadata !== null ? (metadata['token_endpoint_auth_method'] ?? 'none') : 'none';
    const clientId = `mcpgw_client_${randomUUID()}`;
    const secret = method === 'none' ? undefined : randomBytes(32).toString('base64url');
    const client = await ctx.clients.register(metadata, clientId, secret ? sha256(secret) : undefined);
    // RFC 7591 §3.2.1: echo the registered metadata with the issued identifiers.
    return reply
      .code(201)
      .header('cache-control', 'no-store')
      .send({
        client_id: client.clientId,
        ...(secret ? { client_secret: secret, client_secret_expires_at: 0 } : {}),
        client_id_issued_at: client.createdAt,
        redirect_uris: client.redirectUris,
        grant_types: client.grantTypes,
        response_types: client.responseTypes,
        token_endpoint_auth_method: client.tokenEndpointAuthMethod,
        ...(client.clientName ? { client_name: client.clientName } : {}),
        ...(client.clientUri ? { client_uri: client.clientUri } : {}),
        ...(client.logoUri ? { logo_uri: client.logoUri } : {}),
        ...(client.scope ? { scope: client.scope } : {}),
      } satisfies z.input<typeof OAuthClientInformationFullSchema>);
  });
}
