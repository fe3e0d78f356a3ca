import type { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ProtectedResource } from '../oauth/resources.ts';
import { backendHeaders, openBackend, type ProxyContext, sendBackendResponse, sendGatewayError } from './exchange.ts';
import { GatewayError } from './forward.ts';
import type { Gate } from './gate.ts';
import {
  HEADER_VALIDATION_PROTOCOL_VERSION,
  headerMismatch,
  idOf,
  isObject,
  JSONRPC_HEADER_MISMATCH,
  JSONRPC_INVALID_REQUEST,
  JSONRPC_PARSE_ERROR,
  JSONRPC_SESSION_NOT_FOUND,
  jsonRpcError,
} from './jsonrpc.ts';
import { limitBytes, readBounded, tooLarge, WHOLE_BODY_BYTES } from './relay.ts';
import type { SessionBinding } from './session-binding.ts';

/**
 * Streamable HTTP (MCP 2025-03-26 … 2026-07-28 transports): POST (JSON or SSE answer), GET
 * (server stream) and DELETE (session end) on the resource's path, forwarded to backend.url.
 */
export function registerStreamableHttp(
  scope: FastifyInstance,
  ctx: ProxyContext & { gate: Gate; sessions: SessionBinding },
  resource: ProtectedResource,
): void {
  const backend = resource.backend;
  const upstream = new URL(backend.url!);

  scope.options(resource.path, (request, reply) => ctx.gate.preflight(request, reply, 'GET, POST, DELETE'));

  scope.route({
    method: ['GET', 'POST', 'DELETE'],
    url: resource.path,
    handler: async (request, reply) => {
      const caller = await ctx.gate.admit(request, reply, resource);
      if (!caller) return reply;
      const sessionId = header(request, 'mcp-session-id');
      if (sessionId !== undefined && !(await ctx.sessions.claim(resource.resource, sessionId, caller.record.userKey))) {
        return reply.code(404).send(jsonRpcError(JSONRPC_SESSION_NOT_FOUND, 'Session not found'));
      }
      let body: Readable | Buffer | undefined;
      if (request.method === 'POST') {
        try {
          body = await requestBody(request, backend.maxBodyBytes);
        } catch (error) {
          if (error instanceof GatewayError) return sendGatewayError(reply, error, error instanceof RequestError ? error.id : null);
          throw error;
        }
      }
      const headers = await backendHeaders(ctx, request, caller, resource);
      const method = request.method as 'GET' | 'POST' | 'DELETE';
      const response = await openBackend(ctx, request, reply, resource, { url: upstream, method, headers, body });
      if (!response) return reply;
      const issued = response.headers['mcp-session-id'];
      if (typeof issued === 'string' && issued !== sessionId) {
        await ctx.sessions.claim(resource.resource, issued, caller.record.userKey);
      }
      if (method === 'DELETE' && sessionId !== undefined && response.statusCode < 300) {
        await ctx.sessions.forget(resource.resource, sessionId);
      }
      await sendBackendResponse(ctx, reply, response);
      return reply;
    },
  });
}

class RequestError extends GatewayError {
  id: string | number | null = null;
}

/**
 * The POST body for the backend: streamed through a byte counter, except for 2026-07-28
 * requests, which are read (bounded) so the mirrored headers can be checked against the body
 * (2026-07-28 transports/streamable-http §Server Validation).
 */
async function requestBody(request: FastifyRequest, maxBytes: number): Promise<Readable | Buffer | undefined> {
  const source = request.body as Readable | undefined;
  if (Number(request.headers['content-length']) > maxBytes) throw tooLarge(maxBytes);
  if (source === undefined || typeof source.pipe !== 'function') return undefined;
  if (header(request, 'mcp-protocol-version') !== HEADER_VALIDATION_PROTOCOL_VERSION) {
    // A small body of known length is read whole: the backend request then goes out in one
    // write, without a stream pipeline per call (bench/README.md, benchmark 1). Others stream.
    const length = Number(request.headers['content-length']);
    if (length <= WHOLE_BODY_BYTES) return readBounded(source, maxBytes);
    return source.pipe(limitBytes(maxBytes));
  }

  const raw = await readBounded(source, maxBytes);
  let message: unknown;
  try {
    message = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new RequestError(400, 'Parse error: request body is not valid JSON', JSONRPC_PARSE_ERROR);
  }
  if (!isObject(message)) {
    throw new RequestError(400, 'Invalid Request: the body must be a single JSON-RPC message', JSONRPC_INVALID_REQUEST);
  }
  const mismatch = headerMismatch(
    {
      protocolVersion: header(request, 'mcp-protocol-version'),
      method: header(request, 'mcp-method'),
      name: header(request, 'mcp-name'),
    },
    message,
  );
  if (mismatch) {
    const error = new RequestError(400, mismatch, JSONRPC_HEADER_MISMATCH);
    error.id = idOf(message);
    throw error;
  }
  return raw;
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === 'string' ? value : undefined;
}
