import type { FastifyReply, FastifyRequest } from 'fastify';
import { isLoopbackHost } from '../config/schema.ts';
import type { ProtectedResource } from '../oauth/resources.ts';
import type { AccessTokenRecord } from '../ports/records.ts';
import { checkBearer, type ValidateAccessToken } from './bearer.ts';
import { JSONRPC_SERVER_ERROR, jsonRpcError } from './jsonrpc.ts';

/** DESIGN §5: what browsers may send and read on the MCP endpoints. */
const CORS_ALLOW_HEADERS = 'authorization, content-type, mcp-protocol-version, mcp-session-id, last-event-id, mcp-method, mcp-name';
const CORS_EXPOSE_HEADERS = 'mcp-session-id, www-authenticate';
const CORS_MAX_AGE_SECONDS = 600;

export interface Admitted {
  token: string;
  record: AccessTokenRecord;
}

/**
 * The checks in front of every MCP endpoint, in order: Origin, Host, then the bearer token.
 * - MCP transports §Security Warning: an `Origin` that is present and not allowed → 403.
 * - Bound to loopback, a `Host` that is not a loopback name or the public host → 403 (DNS
 *   rebinding; the SDK's localhost host validation allows any port the same way).
 */
export function createGate(deps: {
  publicUrl: string;
  allowedOrigins: readonly string[];
  listenHost: string;
  validateAccessToken: ValidateAccessToken;
}) {
  const publicUrl = new URL(deps.publicUrl);
  const allowedOrigins = new Set([publicUrl.origin, ...deps.allowedOrigins.map((o) => o.replace(/\/$/, ''))]);
  const checkHost = isLoopbackHost(deps.listenHost);

  function hostAllowed(host: string | undefined): boolean {
    if (!checkHost) return true;
    if (!host) return false;
    let hostname: string;
    try {
      hostname = new URL(`http://${host}`).hostname;
    } catch {
      return false;
    }
    return hostname === publicUrl.hostname || ['localhost', '127.0.0.1', '[::1]'].includes(hostname);
  }

  /** Origin and Host; sets CORS response headers for an allowed Origin. False when it answered 403. */
  function checkTransport(request: FastifyRequest, reply: FastifyReply): boolean {
    const origin = request.headers.origin;
    if (origin !== undefined && !allowedOrigins.has(origin)) {
      reply.code(403).send(jsonRpcError(JSONRPC_SERVER_ERROR, 'Forbidden: Origin not allowed'));
      return false;
    }
    if (!hostAllowed(request.headers.host)) {
      reply.code(403).send(jsonRpcError(JSONRPC_SERVER_ERROR, 'Forbidden: Host not allowed'));
      return false;
    }
    if (origin !== undefined) {
      reply.headers({ 'access-control-allow-origin': origin, 'access-control-expose-headers': CORS_EXPOSE_HEADERS, vary: 'Origin' });
    }
    return true;
  }

  return {
    /** CORS preflight (Fetch §3.2.2); no token is involved. */
    preflight(request: FastifyRequest, reply: FastifyReply, methods: string) {
      if (!checkTransport(request, reply)) return reply;
      const requested = String(request.headers['access-control-request-headers'] ?? '')
        .split(',')
        .map((h) => h.trim().toLowerCase())
        .filter((h) => h.startsWith('mcp-param-'));
      return reply
        .code(204)
        .headers({
          'access-control-allow-methods': `${methods}, OPTIONS`,
          'access-control-allow-headers': [CORS_ALLOW_HEADERS, ...requested].join(', '),
          'access-control-max-age': String(CORS_MAX_AGE_SECONDS),
        })
        .send();
    },

    /** Resolves to the caller, or undefined after answering 401/403. */
    async admit(request: FastifyRequest, reply: FastifyReply, resource: ProtectedResource): Promise<Admitted | undefined> {
      if (!checkTransport(request, reply)) return undefined;
      const result = await checkBearer(request.headers, resource, deps.validateAccessToken);
      if (result.ok) return { token: result.token, record: result.record };
      reply.code(result.status).header('www-authenticate', result.wwwAuthenticate).header('cache-control', 'no-store').send(result.body);
      return undefined;
    },
  };
}
export type Gate = ReturnType<typeof createGate>;
