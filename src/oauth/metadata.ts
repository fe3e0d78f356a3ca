import type { FastifyInstance } from 'fastify';
import type { AuthServerContext } from './context.ts';
import type { ProtectedResource } from './resources.ts';

/** RFC 9728 §2 Protected Resource Metadata for one resource. */
export function protectedResourceMetadata(ctx: AuthServerContext, resource: ProtectedResource) {
  return {
    resource: resource.resource,
    authorization_servers: [ctx.issuer],
    scopes_supported: resource.scopes,
    bearer_methods_supported: ['header'],
    resource_name: resource.name,
  };
}

/** RFC 8414 §2 Authorization Server Metadata; `issuer` equals the PRM entry exactly. */
export function authorizationServerMetadata(ctx: AuthServerContext) {
  const base = ctx.issuer;
  return {
    issuer: base,
    authorization_endpoint: `${base}/authorize`,
    token_endpoint: `${base}/token`,
    revocation_endpoint: `${base}/revoke`,
    ...(ctx.config.clientRegistration.dynamic ? { registration_endpoint: `${base}/register` } : {}),
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['none', 'client_secret_post', 'client_secret_basic'],
    revocation_endpoint_auth_methods_supported: ['none', 'client_secret_post', 'client_secret_basic'],
    scopes_supported: [...new Set(ctx.resources.flatMap((r) => r.scopes))],
    // draft-ietf-oauth-client-id-metadata-document §4.
    client_id_metadata_document_supported: ctx.config.clientRegistration.metadataDocuments.enabled,
    // RFC 9207 §3.
    authorization_response_iss_parameter_supported: true,
  };
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
