import type { OAuthMetadataSchema, OAuthProtectedResourceMetadataSchema } from '@modelcontextprotocol/core';
import type { FastifyInstance } from 'fastify';
import type { z } from 'zod';
import { ASYMMETRIC_ALGORITHMS, JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT } from '../config/schema.ts';
import type { AuthServerContext } from './context.ts';
import type { ProtectedResource } from './resources.ts';
import { ID_JAG_GRANT_PROFILE } from './token-id-jag.ts';

/** RFC 9728 §2 Protected Resource Metadata for one resource. */
function protectedResourceMetadata(ctx: AuthServerContext, resource: ProtectedResource) {
  return {
    resource: resource.resource,
    authorization_servers: [ctx.issuer],
    scopes_supported: resource.scopes,
    bearer_methods_supported: ['header'],
    resource_name: resource.name,
  } satisfies z.input<typeof OAuthProtectedResourceMetadataSchema>;
}

/**
 * RFC 8414 §2 Authorization Server Metadata; `issuer` equals the PRM entry exactly. Grant types
 * and client authentication methods are exactly the enabled ones: client_credentials and
 * private_key_jwt only with a configured client using them, jwt-bearer only with ID-JAG issuers
 * or Entra workloads configured.
 */
function authorizationServerMetadata(ctx: AuthServerContext) {
  const base = ctx.issuer;
  const configured = [...ctx.configuredClients.values()].map((c) => c.record);
  const idJag = ctx.config.enterpriseAuthorization !== undefined;
  const jwtBearer = idJag || ctx.config.workloads.entra !== undefined;
  const grantTypes = [
    'authorization_code',
    'refresh_token',
    ...(configured.some((c) => c.grantTypes.includes('client_credentials')) ? ['client_credentials'] : []),
    ...(jwtBearer ? [JWT_BEARER_GRANT] : []),
    ...(ctx.resources.some((r) => r.backend.tokenExchange) ? [TOKEN_EXCHANGE_GRANT] : []),
  ];
  const privateKeyJwt = configured.some((c) => c.tokenEndpointAuthMethod === 'private_key_jwt');
  const authMethods = ['none', 'client_secret_post', 'client_secret_basic', ...(privateKeyJwt ? ['private_key_jwt'] : [])];
  return {
    issuer: base,
    authorization_endpoint: `${base}/authorize`,
    token_endpoint: `${base}/token`,
    revocation_endpoint: `${base}/revoke`,
    ...(ctx.config.clientRegistration.dynamic ? { registration_endpoint: `${base}/register` } : {}),
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: grantTypes,
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: authMethods,
    // RFC 8414 §2: required when private_key_jwt is listed; MCP OAuth Client Credentials extension.
    ...(privateKeyJwt ? { token_endpoint_auth_signing_alg_values_supported: [...ASYMMETRIC_ALGORITHMS] } : {}),
    revocation_endpoint_auth_methods_supported: authMethods,
    ...(privateKeyJwt ? { revocation_endpoint_auth_signing_alg_values_supported: [...ASYMMETRIC_ALGORITHMS] } : {}),
    // draft-ietf-oauth-identity-assertion-authz-grant §7.2; MCP enterprise-managed-authorization §6.
    ...(idJag ? { authorization_grant_profiles_supported: [ID_JAG_GRANT_PROFILE] } : {}),
    scopes_supported: [...new Set(ctx.resources.flatMap((r) => r.scopes))],
    // draft-ietf-oauth-client-id-metadata-document §4.
    client_id_metadata_document_supported: ctx.config.clientRegistration.metadataDocuments.enabled,
    // RFC 9207 §3.
    authorization_response_iss_parameter_supported: true,
  } satisfies z.input<typeof OAuthMetadataSchema>;
}

export function registerMetadata(app: FastifyInstance, ctx: AuthServerContext) {
  const cacheable = 'public, max-age=300';
  for (const resource of ctx.resources) {
    // RFC 9728 §3.1: path-aware location, the well-known segment before the resource path.
    app.get(`/.well-known/oauth-protected-resource${resource.path}`, async (_request, reply) =>
      reply.header('cache-control', cacheable).send(protectedResourceMetadata(ctx, resource)),
    );
  }
  // Root PRM: the default (first) resource, for clients that do not build the path-aware URL.
  app.get('/.well-known/oauth-protected-resource', async (_request, reply) =>
    reply.header('cache-control', cacheable).send(protectedResourceMetadata(ctx, ctx.resources[0]!)),
  );
  const asMetadata = async (_request: unknown, reply: import('fastify').FastifyReply) =>
    reply.header('cache-control', cacheable).send(authorizationServerMetadata(ctx));
  app.get('/.well-known/oauth-authorization-server', asMetadata);
  // Some clients look for OpenID discovery first; the same document answers there.
  app.get('/.well-known/openid-configuration', asMetadata);
}
