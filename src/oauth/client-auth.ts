import type { FastifyRequest } from 'fastify';
import type { ClientRecord } from '../ports/records.ts';
import type { AuthServerContext } from './context.ts';
import { OAuthError } from './errors.ts';
import { type Params, param } from './params.ts';
import { constantTimeEqual, sha256 } from './secrets.ts';

/**
 * Client authentication at the token and revocation endpoints (OAuth 2.1 §2.4):
 * public clients send client_id; confidential DCR clients use client_secret_basic or _post.
 */
export async function authenticateClient(ctx: AuthServerContext, request: FastifyRequest): Promise<ClientRecord> {
  const { clientId, secret } = credentials(request);
  let client: ClientRecord;
  try {
    client = await ctx.clients.find(clientId);
  } catch (error) {
    if (error instanceof OAuthError && error.code !== 'temporarily_unavailable') throw invalidClient(error.description);
    throw error;
  }
  if (client.clientSecretHash) {
    if (!secret || !constantTimeEqual(sha256(secret), client.clientSecretHash)) throw invalidClient('client authentication failed');
  }
  return client;
}

/**
 * The client at /revoke (RFC 7009 §2.1). A metadata-document client is public (it authenticates
 * by client_id alone), so its document is not fetched here: an unauthenticated endpoint must not
 * make us fetch a URL or store a record, and only tokens issued to exactly that client_id can be
 * revoked with it. DCR clients are authenticated as at /token.
 */
export async function authenticateRevokingClient(ctx: AuthServerContext, request: FastifyRequest): Promise<string> {
  const { clientId } = credentials(request);
  if (ctx.clients.isMetadataDocumentUrl(clientId)) return clientId;
  return (await authenticateClient(ctx, request)).clientId;
}

/** client_id and secret, from the form or from Basic credentials (RFC 6749 §2.3.1). */
function credentials(request: FastifyRequest): { clientId: string; secret: string | undefined } {
  const body = request.body as Params;
  let clientId = param(body, 'client_id');
  let secret = param(body, 'client_secret');
  const authorization = request.headers.authorization;
  if (authorization?.toLowerCase().startsWith('basic ')) {
    const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw invalidClient('malformed Basic credentials');
    // RFC 6749 §2.3.1: form-urlencoded inside Basic.
    const basicId = safeDecode(decoded.slice(0, colon));
    if (clientId !== undefined && clientId !== basicId) throw invalidClient('client_id differs from the Basic credentials');
    clientId = basicId;
    secret = safeDecode(decoded.slice(colon + 1));
  }
  if (!clientId) throw invalidClient('client authentication required: send client_id');
  return { clientId, secret };
}

function invalidClient(description: string): OAuthError {
  return new OAuthError('invalid_client', description, { headers: { 'www-authenticate': 'Basic realm="mcp-entra-gateway"' } });
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    throw invalidClient('malformed Basic credentials');
  }
}
