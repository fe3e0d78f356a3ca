import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { isLoopbackHost } from '../config/schema.ts';
import type { ProtectedResource } from '../oauth/resources.ts';
import { createBoundedCache } from '../ports/bounded-cache.ts';
import type { AccessTokenRecord } from '../ports/records.ts';
import { type BearerRefusal, type BearerResult, checkBearer, type ValidateAccessToken } from './bearer.ts';
import { JSONRPC_SERVER_ERROR, jsonRpcError } from './errors.ts';
import { sendJson } from './respond.ts';

/** DESIGN §5: what browsers may send and read on the MCP endpoints. */
const CORS_ALLOW_HEADERS = 'authorization, content-type, mcp-protocol-version, mcp-session-id, last-event-id, mcp-method, mcp-name';
const CORS_EXPOSE_HEADERS = 'mcp-session-id, www-authenticate';
const CORS_MAX_AGE_SECONDS = 600;
const MAX_HOST_VERDICTS = 64;

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

  // Verdicts per Host value (a URL parse per request otherwise); bounded, as Host is the client's.
  const hostVerdicts = createBoundedCache<string, boolean>(MAX_HOST_VERDICTS);
  function hostAllowed(host: string | undefined): boolean {
    if (!checkHost) return true;
    if (!host) return false;
    let verdict = hostVerdicts.get(host);
    if (verdict === undefined) {
      verdict = parseHostAllowed(host);
      hostVerdicts.set(host, verdict);
    }
    return verdict;
  }

  function parseHostAllowed(host: string): boolean {
    let hostname: string;
    try {
      hostname = new URL(`http://${host}`).hostname;
    } catch {
      return false;
    }
    return hostname === publicUrl.hostname || isLoopbackHost(hostname);
  }

  /** Origin and Host: the 403 message when refused, else undefined. */
  function transportRefusal(headers: IncomingHttpHeaders): string | undefined {
    const origin = headers.origin;
    if (origin !== undefined && !allowedOrigins.has(origin)) return 'Forbidden: Origin not allowed';
    if (!hostAllowed(headers.host)) return 'Forbidden: Host not allowed';
    return undefined;
  }

  /** The CORS response headers for an allowed Origin. */
  function corsHeaders(origin: string): Record<string, string> {
    return { 'access-control-allow-origin': origin, 'access-control-expose-headers': CORS_EXPOSE_HEADERS, vary: 'Origin' };
  }

  return {
    /** CORS preflight (Fetch §3.2.2); no token is involved. Served by fastify. */
    preflight(request: FastifyRequest, reply: FastifyReply, methods: string) {
      const refusal = transportRefusal(request.headers);
      if (refusal !== undefined) return reply.code(403).send(jsonRpcError(JSONRPC_SERVER_ERROR, refusal));
      const origin = request.headers.origin;
      if (origin !== undefined) reply.headers(corsHeaders(origin));
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

    /**
     * Resolves to the caller, or undefined after answering 401/403 on `res`. For an allowed
     * Origin the CORS headers are set on `res` (kept by the answer written later).
     */
    admit(req: IncomingMessage, res: ServerResponse, resource: ProtectedResource): Admitted | undefined | Promise<Admitted | undefined> {
      const headers = req.headers;
      const refusal = transportRefusal(headers);
      if (refusal !== undefined) {
        sendJson(res, 403, jsonRpcError(JSONRPC_SERVER_ERROR, refusal));
        return undefined;
      }
      const origin = headers.origin;
      if (origin !== undefined) for (const [name, value] of Object.entries(corsHeaders(origin))) res.setHeader(name, value);
      // A cached token is admitted without a promise (this runs on every MCP call).
      const result = checkBearer(headers, resource, deps.validateAccessToken);
      return result instanceof Promise ? result.then((r) => admitted(res, r)) : admitted(res, result);
    },
  };
}

/** A 401/403 of the bearer rules (src/proxy/bearer.ts), with its challenge. */
export function sendBearerRefusal(res: ServerResponse, refusal: BearerRefusal): void {
  sendJson(res, refusal.status, refusal.body, { 'www-authenticate': refusal.wwwAuthenticate, 'cache-control': 'no-store' });
}
export type Gate = ReturnType<typeof createGate>;

/** The caller (the bearer result itself: it has the token and record), or undefined after answering 401/403. */
function admitted(res: ServerResponse, result: BearerResult): Admitted | undefined {
  if (result.ok) return result;
  sendBearerRefusal(res, result);
  return undefined;
}
