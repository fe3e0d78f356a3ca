import type { BackendConfig, PolicyRuleConfig } from '../config/schema.ts';

/** A protected MCP resource (RFC 9728): one per configured backend, its own audience. */
export interface ProtectedResource {
  name: string;
  /** Public path of the MCP endpoint, e.g. /mcp. */
  path: string;
  /** The resource identifier and token audience, e.g. http://localhost:8080/mcp (RFC 8707). */
  resource: string;
  /** RFC 9728 §3.1: the well-known path is inserted between host and the resource's path. */
  metadataUrl: string;
  /** Every scope a token for it may carry (PRM `scopes_supported`). */
  scopes: string[];
  /**
   * What a client gets without asking for more: the scopes but those only step-up rules require
   * (the 401 challenge's `scope`, a request without `scope`). MCP 2025-11-25 authorization §Scope
   * Selection Strategy: the basic set first, more through step-up.
   */
  defaultScopes: string[];
  backend: BackendConfig;
}

/** `globalRules`: config `policy.rules`, whose step-up scopes count for every backend. */
export function buildResources(publicUrl: string, backends: readonly BackendConfig[], globalRules: readonly PolicyRuleConfig[] = []): ProtectedResource[] {
  const origin = new URL(publicUrl).origin;
  return backends.map((backend) => {
    const rules = [...globalRules, ...(backend.policy?.rules ?? [])];
    const stepUp = new Set(rules.flatMap((r) => (r.effect === 'step-up' ? (r.scopes ?? []) : [])));
    return {
      name: backend.name,
      path: backend.path,
      resource: `${origin}${backend.path}`,
      metadataUrl: `${origin}/.well-known/oauth-protected-resource${backend.path}`,
      scopes: [...backend.scopes],
      defaultScopes: backend.scopes.filter((s, i) => i === 0 || !stepUp.has(s)),
      backend,
    };
  });
}

/**
 * RFC 8707 §2: `resource` must name one of our resources. Clients differ on a trailing slash,
 * so `…/mcp/` is accepted for `…/mcp`; nothing else is normalised.
 */
export function findResource(resources: readonly ProtectedResource[], value: string): ProtectedResource | undefined {
  const trimmed = value.endsWith('/') ? value.slice(0, -1) : value;
  return resources.find((r) => r.resource === trimmed);
}
