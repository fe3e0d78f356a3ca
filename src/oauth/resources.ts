import type { BackendConfig } from '../config/schema.ts';

/** A protected MCP resource (RFC 9728): one per configured backend, its own audience. */
export interface ProtectedResource {
  name: string;
  /** Public path of the MCP endpoint, e.g. /mcp. */
  path: string;
  /** The resource identifier and token audience, e.g. http://localhost:8080/mcp (RFC 8707). */
  resource: string;
  /** RFC 9728 §3.1: the well-known path is inserted between host and the resource's path. */
  metadataUrl: string;
  scopes: string[];
  backend: BackendConfig;
}

export function buildResources(publicUrl: string, backends: readonly BackendConfig[]): ProtectedResource[] {
  const origin = new URL(publicUrl).origin;
  return backends.map((backend) => ({
    name: backend.name,
    path: backend.path,
    resource: `${origin}${backend.path}`,
    metadataUrl: `${origin}/.well-known/oauth-protected-resource${backend.path}`,
    scopes: [...backend.scopes],
    backend,
  }));
}

/**
 * RFC 8707 §2: `resource` must name one of our resources. Clients differ on a trailing slash,
 * so `…/mcp/` is accepted for `…/mcp`; nothing else is normalised.
 */
export function findResource(resources: readonly ProtectedResource[], value: string): ProtectedResource | undefined {
  const trimmed = value.endsWith('/') ? value.slice(0, -1) : value;
  return resources.find((r) => r.resource === trimmed);
}
