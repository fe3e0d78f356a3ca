import type { FastifyInstance } from 'fastify';
import { decodeJwt } from 'jose';
import { SECURITY_EVENT, userFields } from '../audit/events.ts';
import { JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT } from '../config/schema.ts';
import type { ClientRecord } from '../ports/records.ts';
import { authenticateClient, presentsClient } from './client-auth.ts';
import type { AuthServerContext, CodeRecord, ConsentRecord } from './context.ts';
import { OAuthError } from './errors.ts';
import { consentCovers } from './approvals.ts';
import { AUTHORIZATION_CODE_PREFIX } from './codes.ts';
import { keys } from './keys.ts';
import { type Params, param, requiredParam, requireForm, splitScopes } from './params.ts';
import { verifyPkce } from './pkce.ts';
import { createRateLimit } from './rate-limit.ts';
import { findResource } from './resources.ts';
import { sha256 } from './secrets.ts';
import { clientCredentialsGrant } from './token-client-credentials.ts';
import { createEntraAppTokens, createEntraWorkloadGrant } from './token-entra-workload.ts';
import type { DownstreamTokens } from './downstream-tokens.ts';
import { createTokenExchange } from './token-exchange.ts';
import { createIdJagGrant } from './token-id-jag.ts';

/** Grant types a client must be registered for (its `grantTypes`) before it may use them. */
const CLIENT_GRANT_TYPES = new Set(['authorization_code', 'refresh_token', 'client_credentials', JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT]);

/**
 * POST /token (OAuth 2.1 §3.2): authorization_code, refresh_token, client_credentials, and
 * jwt-bearer assertions (RFC 7523 §2.1): an ID-JAG or an Entra app-only token, told apart by issuer;
 * token-exchange (RFC 8693) for backends that pull their downstream tokens.
 */
export function registerToken(app: FastifyInstance, ctx: AuthServerContext, deps: { downstreamTokens?: DownstreamTokens } = {}) {
  const rateLimit = createRateLimit(ctx, 'token', ctx.config.rateLimits.tokenRequestsPerMinute, 60);
  const tokenExchange = createTokenExchange(ctx, deps.downstreamTokens);
  const idJag = ctx.config.enterpriseAuthorization && createIdJagGrant(ctx, ctx.config.enterpriseAuthorization);
  const entraApps = ctx.config.workloads.entra && createEntraAppTokens(ctx, ctx.config.workloads.entra);
  const entraWorkloads = entraApps && createEntraWorkloadGrant(ctx, ctx.config.workloads.entra!, entraApps);
  app.post('/token', async (request, reply) => {
    await rateLimit(request);
    requireForm(request.headers['content-type'], 'token');
    const body = request.body as Params;
    const grantType = requiredParam(body, 'grant_type');
    // RFC 7523 §3.1: a jwt-bearer grant may come without client authentication (an Entra app's token is its own credential).
    const client = grantType === JWT_BEARER_GRANT && !presentsClient(request) ? undefined : await authenticateClient(ctx, request, entraApps || undefined);
    if (client && CLIENT_GRANT_TYPES.has(grantType) && !client.grantTypes.includes(grantType)) {
      throw new OAuthError('unauthorized_client', `client is not registered for grant_type ${grantType}`);
    }
    if (grantType === TOKEN_EXCHANGE_GRANT && tokenExchange) {
      // RFC 8693: `resource`/`audience` name the downstream token's resource, not one of ours.
      const exchanged = await tokenExchange.redeem(client!, body);
      return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').send(exchanged);
    }
    const resourceParam = param(body, 'resource');
    const resource = resourceParam === undefined ? undefined : findResource(ctx.resources, resourceParam)?.resource;
    if (resourceParam !== undefined && resource === undefined) {
      throw new OAuthError('invalid_target', `resource ${resourceParam} is not served by this gateway`);
    }
    const scopes = splitScopes(param(body, 'scope'));
    let tokens: unknown;
    if (grantType === 'authorization_code') {
      tokens = await exchangeCode(ctx, body, client!, resource, request.ip);
    } else if (grantType === 'refresh_token') {
      tokens = await ctx.grants.refresh(requiredParam(body, 'refresh_token'), client!.clientId, { scopes, resource });
    } else if (grantType === 'client_credentials') {
      tokens = await clientCredentialsGrant(ctx, client!, { scopes, resource, address: request.ip });
    } else if (grantType === JWT_BEARER_GRANT && (idJag || entraWorkloads)) {
      const assertion = requiredParam(body, 'assertion');
      const issuer = unverifiedIssuer(assertion);
      const grant = idJag?.trusts(issuer) ? idJag : entraWorkloads?.claims(issuer) ? entraWorkloads : undefined;
      if (!grant) throw new OAuthError('invalid_grant', 'the assertion issuer is not trusted');
      tokens = await grant.redeem(client, assertion, { scopes, resource, address: request.ip });
    } else {
      throw new OAuthError('unsupported_grant_type', `grant_type ${grantType} is not supported`);
    }
    if (client) await ctx.clients.keepAlive(client, true);
    return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').send(tokens);
  });
}

/** The `iss` of a JWT before verification, only to choose who verifies it. */
function unverifiedIssuer(assertion: string): unknown {
  try {
    return decodeJwt(assertion).iss;
  } catch {
    throw new OAuthError('invalid_grant', 'the assertion is not a JWT');
  }
}

async function exchangeCode(ctx: AuthServerContext, body: Params, client: ClientRecord, resource: string | undefined, address: string) {
  const { clientId } = client;
  const code = requiredParam(body, 'code');
  const verifier = requiredParam(body, 'code_verifier');
  if (!code.startsWith(AUTHORIZATION_CODE_PREFIX)) throw new OAuthError('invalid_grant', 'unknown or expired authorization code');
  const codeHash = sha256(code);
  // Single use: exactly one request can take the code (DESIGN §4).
  const record = await ctx.store.take<CodeRecord>(keys.code(codeHash));
  if (!record) {
    const issuedGrant = await ctx.store.get<string>(keys.usedCode(codeHash));
    if (issuedGrant) {
      // RFC 6749 §4.1.2: a replayed code revokes the tokens it issued.
      await ctx.grants.revokeGrant(issuedGrant);
      ctx.audit.record({ 'event.name': SECURITY_EVENT.codeReplay, 'oauth.client.id': clientId, 'oauth.grant.id': issuedGrant, 'client.address': address });
      throw new OAuthError('invalid_grant', 'authorization code was already used; tokens issued from it are revoked');
    }
    throw new OAuthError('invalid_grant', 'unknown or expired authorization code');
  }
  await ctx.store.set(keys.usedCode(codeHash), record.grantId, 2 * ctx.config.tokens.authorizationCodeTtlSeconds);
  if (record.expiresAt <= ctx.clock.nowSeconds()) throw new OAuthError('invalid_grant', 'authorization code has expired');
  if (record.clientId !== clientId) throw new OAuthError('invalid_grant', 'authorization code was issued to another client');
  // OAuth 2.1 §4.1.3: redirect_uri, when sent, must equal the one of the authorization request.
  const redirectUri = param(body, 'redirect_uri');
  if (redirectUri !== undefined && redirectUri !== record.redirectUri) {
    throw new OAuthError('invalid_grant', 'redirect_uri does not match the authorization request');
  }
  if (!verifyPkce(verifier, record.codeChallenge)) throw new OAuthError('invalid_grant', 'code_verifier does not match the code_challenge');
  if (resource !== undefined && resource !== record.resource) {
    throw new OAuthError('invalid_target', 'resource does not match the authorization request');
  }
  // A code lives only as long as the user's approval: Revoke at /account (which deletes it) ends
  // codes issued before it, and a later re-approval does not revive them.
  const consent = await ctx.store.get<ConsentRecord>(keys.consent(record.userKey, record.clientId));
  if (!consentCovers(consent, record) || consent!.approvedAt > record.issuedAt) {
    throw new OAuthError('invalid_grant', 'the user revoked access for this client');
  }
  const grant = {
    grantId: record.grantId,
    user: record.user,
    userKey: record.userKey,
    clientId,
    scopes: record.scopes,
    resource: record.resource,
    upstream: record.upstream,
    upstreamExpiresAt: record.upstreamExpiresAt,
  };
  // RFC 6749 §5.1: a refresh token is optional; a client not registered for refresh_token (which
  // /token would refuse to redeem) gets none, and its grant ends with the access token.
  const { tokens } = client.grantTypes.includes('refresh_token') ? await ctx.grants.create(grant) : await ctx.grants.createAccessOnly(grant);
  ctx.audit.record({
    'event.name': SECURITY_EVENT.grantIssued,
    ...userFields(record.user, record.userKey),
    'oauth.grant_type': 'authorization_code',
    'oauth.client.id': clientId,
    'oauth.grant.id': record.grantId,
    'oauth.scope': tokens.scope,
    'oauth.resource': record.resource,
    'client.address': address,
  });
  return tokens;
}
