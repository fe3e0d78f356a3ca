import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { ProtectedResource } from '../oauth/resources.ts';
import { NOT_JSON, type ParsedBody, parsedBody } from '../http/parsed-body.ts';
import { backendHeaders, openBackend, type ProxyContext, sendBackendResponse } from './exchange.ts';
import {
  GatewayError,
  guarded,
  JSONRPC_HEADER_MISMATCH,
  JSONRPC_INVALID_REQUEST,
  JSONRPC_PARSE_ERROR,
  JSONRPC_SESSION_NOT_FOUND,
  jsonRpcError,
  tooLarge,
} from './errors.ts';
import { destroyBody, WHOLE_BODY_BYTES } from './forward.ts';
import { insufficientScope } from './bearer.ts';
import { type Gate, sendBearerRefusal } from './gate.ts';
import { HEADER_VALIDATION_PROTOCOL_VERSION, headerMismatch, idOf, isObject, SUBSCRIPTIONS_LISTEN } from './jsonrpc.ts';
import { beginOperations } from './audit-hook.ts';
import { auditCaller, auditedRequests } from './audit-request.ts';
import { filterAnswer } from './policy-hook.ts';
import { arrivedWhole, limitBytes, readBounded } from './relay.ts';
import { header, requestStream, sendJson } from './respond.ts';
import type { SessionBinding } from './session-binding.ts';
import type { Subject } from '../policy/enforce.ts';

/**
 * Streamable HTTP (MCP 2025-03-26 … 2026-07-28 transports): POST (JSON or SSE answer), GET
 * (server stream) and DELETE (session end) on the resource's path, forwarded to backend.url.
 * These three are raw node:http routes (no fastify objects on every tool call, benchmark 1);
 * the CORS preflight stays on fastify.
 */
export function registerStreamableHttp(
  scope: FastifyInstance,
  ctx: ProxyContext & { gate: Gate; sessions: SessionBinding },
  resource: ProtectedResource,
): void {
  scope.options(resource.path, (request, reply) => ctx.gate.preflight(request, reply, 'GET, POST, DELETE'));
  const handler = guarded(ctx.logger, streamableHttpHandler(ctx, resource));
  ctx.routes.add(resource.path, ['GET', 'POST', 'DELETE'], ctx.audit ? auditedRequests(ctx.audit, resource.name, ctx.clientIp, handler) : handler);
}

function streamableHttpHandler(ctx: ProxyContext & { gate: Gate; sessions: SessionBinding }, resource: ProtectedResource) {
  const backend = resource.backend;
  const upstream = new URL(backend.url!);
  const policy = ctx.enforcers.get(resource.name);
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // Cached answers (token, session, assertion) come without a promise: a call awaits only its backend.
    const admitted = ctx.gate.admit(req, res, resource);
    const caller = admitted instanceof Promise ? await admitted : admitted;
    if (!caller) return;
    if (ctx.audit) auditCaller(res, caller);
    const sessionId = header(req.headers, 'mcp-session-id');
    if (sessionId !== undefined) {
      const owned = ctx.sessions.owns(resource.resource, sessionId, caller.record.userKey);
      if (!(owned instanceof Promise ? await owned : owned)) {
        return sendJson(res, 404, jsonRpcError(JSONRPC_SESSION_NOT_FOUND, 'Session not found'));
      }
    }
    const method = req.method as 'GET' | 'POST' | 'DELETE';
    let body: Readable | Buffer | undefined;
    // With a policy, a POST is read whole and judged before the backend sees it.
    const enforcer = method === 'POST' ? policy : undefined;
    if (method === 'POST') {
      // node:http parses a small body sent with its head right after the handler's synchronous
      // part: one microtask later it is all there, and taken at once (requestBody, arrivedWhole).
      if (!req.complete) await undefined;
      const read = requestBody(req, backend.maxBodyBytes, ctx.bodyTimeoutMs, enforcer !== undefined);
      body = read instanceof Promise ? await read : read;
    }
    // The audit trail reads a body the gateway holds whole; a streamed one is recorded as unread.
    // Parsed at most once, for the header check, the policy, the audit trail and tracing together
    // (those two read a body nobody else parses without parsing it: message-scan.ts).
    const parsed = Buffer.isBuffer(body) ? parsedBody(body) : undefined;
    // 2026-07-28 transports/streamable-http §Server Validation (requestBody read such a POST whole).
    if (parsed && header(req.headers, 'mcp-protocol-version') === HEADER_VALIDATION_PROTOCOL_VERSION) checkMirroredHeaders(req, parsed);
    const operations =
      (ctx.audit || ctx.telemetry.tracer) && method === 'POST'
        ? beginOperations(ctx.audit, ctx.telemetry, req, res, {
            caller,
            backend: resource.name,
            sessionId,
            body: parsed,
            judged: enforcer !== undefined,
            clientAddress: ctx.clientIp(req),
          })
        : undefined;
    let subject: Subject | undefined;
    let asksForLists = false;
    if (enforcer && parsed) {
      const found = enforcer.subject(req, caller.record);
      subject = found instanceof Promise ? await found : found;
      // A promise only when a quota applies to a call of the body (one Store round trip).
      const screen = () => enforcer.screen(parsed, subject!, operations?.judged);
      const screened = operations ? operations.inSpan(screen) : screen();
      const { refusal, asksForLists: lists } = screened instanceof Promise ? await screened : screened;
      if (refusal && 'missingScopes' in refusal) {
        // MCP 2025-11-25 authorization §Scope Challenge Handling: the SDK clients re-authorize with this scope and retry.
        return sendBearerRefusal(res, insufficientScope(resource, caller.record.scopes, refusal.missingScopes));
      }
      // A refusal (policy or quota) is a JSON-RPC error with 200: MCP clients take a non-2xx
      // answer to a POST for a broken transport, not for this call's error (docs/security.md).
      if (refusal) {
        operations?.answered(refusal, 200);
        return sendJson(res, 200, refusal, { 'cache-control': 'no-store' });
      }
      asksForLists = lists;
    }
    const built = backendHeaders(ctx, req.headers, caller, resource, parsed);
    const headers = built instanceof Promise ? await built : built;
    if (operations) body = operations.sending(headers, body, upstream);
    const longLived = isLongLived(req);
    let response = await openBackend(ctx, res, resource, { url: upstream, method, headers, body }, longLived);
    if (!response) return;
    // Only an answer to a list request can hold list results (Screening.asksForLists).
    if (enforcer && subject && asksForLists) {
      const privateCache = header(req.headers, 'mcp-protocol-version') === HEADER_VALIDATION_PROTOCOL_VERSION;
      response = await filterAnswer(enforcer, subject, response, { privateCache, timeoutMs: backend.headersTimeoutMs });
    }
    const watcher = operations?.watch(response);
    try {
      const issued = response.headers['mcp-session-id'];
      if (typeof issued === 'string' && issued !== sessionId) {
        const bind = () => ctx.sessions.bindIssued(resource.resource, issued, caller.record.userKey);
        if (!(await (operations ? operations.inSpan(bind) : bind()))) {
          throw new GatewayError(502, 'Bad Gateway: the backend issued a session id that belongs to another user');
        }
      }
      if (method === 'DELETE' && sessionId !== undefined && response.statusCode < 300) {
        await ctx.sessions.forget(resource.resource, sessionId);
      }
    } catch (error) {
      // Nothing of the backend's answer is delivered; release its connection.
      destroyBody(response);
      throw error;
    }
    // A long-lived stream ends as a GET stream does, without an error for its request (a listen
    // stream has no final response to miss).
    sendBackendResponse(ctx, res, response, Buffer.isBuffer(body) && !longLived ? { requestBody: body, watcher } : { watcher });
  };
}

/**
 * The POST body for the backend: streamed through a byte counter, except for small ones and
 * those `held` for a policy, read whole, and 2026-07-28 requests, read (bounded) so the mirrored
 * headers can be checked against the body (checkMirroredHeaders, on the request's shared parse).
 */
function requestBody(
  req: IncomingMessage,
  maxBytes: number,
  timeoutMs: number,
  held: boolean,
): Readable | Buffer | undefined | Promise<Readable | Buffer | undefined> {
  const source = requestStream(req);
  const length = Number(req.headers['content-length']);
  if (length > maxBytes) throw tooLarge(maxBytes);
  if (source === undefined) return undefined;
  const validate = header(req.headers, 'mcp-protocol-version') === HEADER_VALIDATION_PROTOCOL_VERSION;
  // A small body of known length is read whole: the backend request then goes out in one
  // write, without a stream pipeline per call (bench/README.md, benchmark 1). Others stream.
  if (validate || held || length <= WHOLE_BODY_BYTES) return readWhole(source, maxBytes, timeoutMs, length);
  return source.pipe(limitBytes(maxBytes, timeoutMs));
}

/**
 * A body read whole, bounded in size and time; one that has all arrived is taken at once (no
 * timer, listeners or promise per call; benchmark 1).
 */
function readWhole(source: Readable, maxBytes: number, timeoutMs: number, length: number): Buffer | Promise<Buffer> {
  return arrivedWhole(source, maxBytes, length) ?? readBounded(source, maxBytes, timeoutMs);
}

/** A 2026-07-28 POST's mirrored headers against its body (the shared parse): a 400 when they differ. */
function checkMirroredHeaders(req: IncomingMessage, body: ParsedBody): void {
  const message = body.message;
  if (message === NOT_JSON) throw new GatewayError(400, 'Parse error: request body is not valid JSON', JSONRPC_PARSE_ERROR);
  if (!isObject(message)) {
    throw new GatewayError(400, 'Invalid Request: the body must be a single JSON-RPC message', JSONRPC_INVALID_REQUEST);
  }
  const mismatch = headerMismatch(
    {
      protocolVersion: header(req.headers, 'mcp-protocol-version'),
      method: header(req.headers, 'mcp-method'),
      name: header(req.headers, 'mcp-name'),
    },
    message,
  );
  if (mismatch) {
    const error = new GatewayError(400, mismatch, JSONRPC_HEADER_MISMATCH);
    error.id = idOf(message);
    throw error;
  }
}

/**
 * GET streams, and 2026-07-28 `subscriptions/listen` requests, whose answer is a stream that stays
 * open for change notifications (2026-07-28 transports/streamable-http §Receiving Messages). Read
 * from `Mcp-Method`: on a 2026-07-28 request it was checked against the body (checkMirroredHeaders).
 */
function isLongLived(req: IncomingMessage): boolean {
  if (req.method === 'GET') return true;
  return (
    header(req.headers, 'mcp-protocol-version') === HEADER_VALIDATION_PROTOCOL_VERSION &&
    header(req.headers, 'mcp-method') === SUBSCRIPTIONS_LISTEN
  );
}
