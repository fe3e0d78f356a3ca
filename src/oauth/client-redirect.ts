import type { FastifyReply } from 'fastify';
import type { AuthorizationRequest, AuthServerContext } from './context.ts';

/** RFC 6749 §4.1.2 with RFC 9207's `iss`: back to the client's verified redirect_uri. */
export function redirectToClient(
  ctx: AuthServerContext,
  request: Pick<AuthorizationRequest, 'redirectUri' | 'state'>,
  params: Record<string, string>,
  reply: FastifyReply,
) {
  return reply.header('cache-control', 'no-store').redirect(clientRedirectUrl(ctx, request, params).href, 302);
}

export function clientRedirectUrl(
  ctx: AuthServerContext,
  request: Pick<AuthorizationRequest, 'redirectUri' | 'state'>,
  params: Record<string, string>,
): URL {
  const url = new URL(request.redirectUri!);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  if (request.state !== undefined) url.searchParams.set('state', request.state);
  url.searchParams.set('iss', ctx.issuer);
  return url;
}

/** What the consent page and /account show as where a client's answers go. */
export function redirectHost(uri: string): string {
  const url = new URL(uri);
  return url.host || `${url.protocol}//`;
}
