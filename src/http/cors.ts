import type { FastifyInstance } from 'fastify';

/** How long a browser may cache a preflight answer (Fetch §3.2.5: `Access-Control-Max-Age`). */
const PREFLIGHT_MAX_AGE_SECONDS = 86400;
/** What a browser-based client sends: a form or JSON body, a Basic client secret, the MCP version. */
const ALLOWED_REQUEST_HEADERS = 'authorization, content-type, mcp-protocol-version';

/**
 * CORS for the endpoints a browser-based MCP client calls from its own origin: the metadata
 * documents (RFC 8414 §3, RFC 9728 §3: meant for any client), the JWKS, registration, token and
 * revocation (OAuth 2.1 §3.2: public clients redeem codes from the browser). Any origin, never
 * credentials — no cookie travels, so no origin gains anything a client without a browser lacks.
 * The MCP endpoints answer CORS only for `allowedOrigins` (src/proxy/gate.ts).
 */
export function allowAnyOrigin(app: FastifyInstance, paths: readonly string[]): void {
  const open = new Set(paths);
  app.addHook('onRequest', async (request, reply) => {
    if (request.headers.origin !== undefined && open.has(request.routeOptions.url ?? '')) reply.header('access-control-allow-origin', '*');
  });
  for (const path of open) {
    // Fetch §3.2.2: the preflight before a POST with a JSON body or an Authorization header.
    app.options(path, async (_request, reply) =>
      reply
        .code(204)
        .headers({
          'access-control-allow-origin': '*',
          'access-control-allow-methods': 'GET, POST, OPTIONS',
          'access-control-allow-headers': ALLOWED_REQUEST_HEADERS,
          'access-control-max-age': String(PREFLIGHT_MAX_AGE_SECONDS),
        })
        .send(),
    );
  }
}
