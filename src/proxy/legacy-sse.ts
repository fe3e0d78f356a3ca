import { randomBytes } from 'node:crypto';
import { pipeline, type Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { RawHandler } from '../http/app.ts';
import { parsedBody } from '../http/parsed-body.ts';
import { keys } from '../oauth/keys.ts';
import type { ProtectedResource } from '../oauth/resources.ts';
import type { Enforcer } from '../policy/enforce.ts';
import type { Store } from '../ports/store.ts';
import { backendHeaders, openBackend, type ProxyContext, sendBackendResponse } from './exchange.ts';
import { GatewayError, guarded, JSONRPC_INVALID_REQUEST, JSONRPC_SESSION_NOT_FOUND, jsonRpcError, sendGatewayError, tooLarge } from './errors.ts';
import { beginOperations, createSessionAnswers, type SessionAnswers } from './audit-hook.ts';
import { auditCaller, auditedRequests } from './audit-request.ts';
import { destroyBody, isEventStream, WHOLE_BODY_BYTES } from './forward.ts';
import { insufficientScope } from './bearer.ts';
import { type Gate, sendBearerRefusal } from './gate.ts';
import { limitBytes, readBounded } from './relay.ts';
import { requestStream, sendJson } from './respond.ts';

/** A legacy session outlives its last use by this long; refreshed while its stream is open. */
const LEGACY_SESSION_TTL_SECONDS = 3600;

/** Store value under `legacy-session:<id>`: where that session's messages go, and whose it is. */
interface LegacySession {
  resource: string;
  userKey: string;
  /** The backend's message URL for this session (from its `endpoint` event). */
  messageUrl: string;
}


/**
 * HTTP+SSE (MCP 2024-11-05 transports §HTTP with SSE), served at `<path>/sse` and
 * `<path>/message`: the gateway opens the backend's stream, replaces the first `endpoint` event
 * with its own message URL (under a session id of its own), and forwards each POST to the
 * backend URL for that session. The mapping lives in the Store so any replica can take the POSTs.
 */
export function registerLegacySse(
  scope: FastifyInstance,
  ctx: ProxyContext & { gate: Gate; store: Store; publicUrl: string },
  resource: ProtectedResource,
): void {
  const backend = resource.backend;
  const sseUrl = new URL(backend.sseUrl!);
  const ssePath = `${resource.path}/sse`;
  const messagePath = `${resource.path}/message`;
  const publicMessageUrl = `${new URL(ctx.publicUrl).origin}${messagePath}`;

  scope.options(ssePath, (request, reply) => ctx.gate.preflight(request, reply, 'GET'));
  scope.options(messagePath, (request, reply) => ctx.gate.preflight(request, reply, 'POST'));

  const enforcer = ctx.enforcers.get(resource.name);
  /** This replica's open streams with a policy, by the gateway's session id: refusals are answered on them. */
  const streams = new Map<string, ReturnType<Enforcer['filterSse']>>();
  /** This replica's open streams' answers, by the gateway's session id, when operations are followed (audit or spans). */
  const sessionAnswers = new Map<string, SessionAnswers>();
  const observed = ctx.audit !== undefined || ctx.telemetry.tracer !== undefined;

  const audit = ctx.audit;
  const routes = { add: (path: string, methods: string[], handler: RawHandler) => ctx.routes.add(path, methods, audit ? auditedRequests(audit, resource.name, ctx.clientIp, handler) : handler) };
  routes.add(ssePath, ['GET'], guarded(ctx.logger, async (req, res) => {
    const caller = await ctx.gate.admit(req, res, resource);
    if (!caller) return;
    if (audit) auditCaller(res, caller);
    const headers = legacyHeaders(await backendHeaders(ctx, req.headers, caller, resource));
    const response = await openBackend(ctx, res, resource, { url: sseUrl, method: 'GET', headers });
    if (!response) return;
    if (response.statusCode !== 200 || Buffer.isBuffer(response.body) || !isEventStream(response.headers['content-type'])) {
      sendBackendResponse(ctx, res, response);
      return;
    }
    const body = response.body;
    const first = await readFirstEvent(body);
    const endpoint = first && parseEvent(first.event);
    const messageUrl =
      endpoint?.event === 'endpoint' && endpoint.data !== undefined && URL.canParse(endpoint.data, sseUrl.href) ? new URL(endpoint.data, sseUrl) : undefined;
    // The message URL must stay on the configured backend's origin: no forwarding elsewhere.
    if (!first || messageUrl?.origin !== sseUrl.origin) {
      response.body.destroy();
      return sendGatewayError(res, new GatewayError(502, `Bad Gateway: backend ${backend.name} sent no endpoint event`));
    }
    const sessionId = randomBytes(24).toString('base64url');
    const session: LegacySession = {
      resource: resource.resource,
      userKey: caller.record.userKey,
      messageUrl: messageUrl.href,
    };
    try {
      await ctx.store.set(keys.legacySession(sessionId), session, LEGACY_SESSION_TTL_SECONDS);
    } catch (error) {
      // Nothing of the stream is delivered (the error boundary answers 503): release the backend's.
      destroyBody(response);
      throw error;
    }
    const refresh = setInterval(
      () => void ctx.store.set(keys.legacySession(sessionId), session, LEGACY_SESSION_TTL_SECONDS).catch(() => {}),
      (LEGACY_SESSION_TTL_SECONDS / 2) * 1000,
    );
    refresh.unref();
    res.on('close', () => {
      clearInterval(refresh);
      void ctx.store.delete(keys.legacySession(sessionId)).catch(() => {});
    });
    if (first.rest.length > 0) body.unshift(first.rest);
    let passed: Readable = body;
    if (observed) {
      // The answers to this session's POSTs come here: their records get the answer's outcome.
      const answers = createSessionAnswers();
      sessionAnswers.set(sessionId, answers);
      res.on('close', () => {
        sessionAnswers.delete(sessionId);
        answers.end();
      });
      passed = answers.watch(body);
    }
    if (enforcer) {
      // List results on this stream are filtered for its user (src/policy/enforce.ts); refusals are written to it.
      const filter = enforcer.filterSse(await enforcer.subject(req, caller.record), false);
      pipeline(passed, filter, () => {});
      streams.set(sessionId, filter);
      res.on('close', () => streams.delete(sessionId));
      sendBackendResponse(ctx, res, { ...response, body: filter }, {
        prefix: `event: endpoint\ndata: ${publicMessageUrl}?sessionId=${sessionId}\n\n`,
      });
      return;
    }
    sendBackendResponse(ctx, res, passed === body ? response : { ...response, body: passed }, {
      prefix: `event: endpoint\ndata: ${publicMessageUrl}?sessionId=${sessionId}\n\n`,
    });
  }));

  routes.add(messagePath, ['POST'], guarded(ctx.logger, async (req, res) => {
    const caller = await ctx.gate.admit(req, res, resource);
    if (!caller) return;
    if (audit) auditCaller(res, caller);
    const sessionId = sessionIdOf(req.url ?? '');
    if (sessionId === undefined) {
      return sendJson(res, 400, jsonRpcError(JSONRPC_INVALID_REQUEST, 'Bad Request: exactly one sessionId query parameter is required'));
    }
    const session = await ctx.store.get<LegacySession>(keys.legacySession(sessionId));
    // Unknown, expired, another resource's or another user's session: all look the same (404).
    if (!session || session.resource !== resource.resource || session.userKey !== caller.record.userKey) {
      return sendJson(res, 404, jsonRpcError(JSONRPC_SESSION_NOT_FOUND, 'Session not found'));
    }
    if (Number(req.headers['content-length']) > backend.maxBodyBytes) return sendGatewayError(res, tooLarge(backend.maxBodyBytes));
    const source = requestStream(req);
    let body: Readable | Buffer | undefined;
    // With a policy the message is read whole and judged before the backend sees it; for the
    // audit trail a small one of known length is read whole (others stream, recorded as unread).
    const readWhole = enforcer !== undefined || (observed && Number(req.headers['content-length']) <= WHOLE_BODY_BYTES);
    if (readWhole && source) body = await readBounded(source, backend.maxBodyBytes, ctx.bodyTimeoutMs);
    // Parsed at most once, for the policy, the audit trail and tracing together (those two read a
    // body nobody else parses without parsing it: message-scan.ts).
    const parsed = Buffer.isBuffer(body) ? parsedBody(body) : undefined;
    const operations = observed
      ? beginOperations(ctx.audit, ctx.telemetry, req, res, {
          caller,
          backend: resource.name,
          sessionId,
          body: parsed,
          judged: enforcer !== undefined,
          answers: sessionAnswers.get(sessionId),
          clientAddress: ctx.clientIp(req),
        })
      : undefined;
    if (enforcer && parsed) {
      // A promise only when a quota applies to a call of the body (one Store round trip).
      const subject = await enforcer.subject(req, caller.record);
      const screen = () => enforcer.screen(parsed, subject, operations?.judged);
      const screened = operations ? operations.inSpan(screen) : screen();
      const { refusal, retryAfterSeconds } = screened instanceof Promise ? await screened : screened;
      if (refusal && 'missingScopes' in refusal) {
        // The same 403 as on /mcp, in the POST's answer, never on the stream: only an HTTP
        // answer carries the challenge (WWW-Authenticate) a client re-authorizes from.
        return sendBearerRefusal(res, insufficientScope(resource, caller.record.scopes, refusal.missingScopes));
      }
      if (refusal) {
        // HTTP+SSE answers arrive on the stream: there when it is open on this replica, else in the
        // POST's answer (403; a quota's 429 with Retry-After, RFC 6585 §4).
        const stream = streams.get(sessionId);
        const status = stream ? 202 : retryAfterSeconds === undefined ? 403 : 429;
        operations?.answered(refusal, status);
        if (!stream) {
          const retryAfter = retryAfterSeconds === undefined ? {} : { 'retry-after': String(retryAfterSeconds) };
          return sendJson(res, status, refusal, { 'cache-control': 'no-store', ...retryAfter });
        }
        stream.inject(refusal);
        res.writeHead(202, { 'content-type': 'text/plain; charset=utf-8', 'content-length': 8 });
        res.end('Accepted');
        return;
      }
    } else if (!Buffer.isBuffer(body)) {
      body = source?.pipe(limitBytes(backend.maxBodyBytes, ctx.bodyTimeoutMs));
    }
    const headers = legacyHeaders(await backendHeaders(ctx, req.headers, caller, resource, parsed));
    const url = new URL(session.messageUrl);
    if (operations) body = operations.sending(headers, body, url);
    const response = await openBackend(ctx, res, resource, { url, method: 'POST', headers, body });
    if (!response) return;
    sendBackendResponse(ctx, res, response);
  }));
}

/**
 * HTTP+SSE (2024-11-05) has no session or method headers: a client's Streamable HTTP headers are
 * not passed on, so a backend that also speaks Streamable HTTP cannot be steered into another
 * user's session through the legacy routes (their sessions are checked by the gateway's own ids).
 */
function legacyHeaders(headers: Record<string, string>): Record<string, string> {
  for (const name of ['mcp-session-id', 'last-event-id', 'mcp-method', 'mcp-name']) delete headers[name];
  return headers;
}

/** The one `sessionId` query parameter of a message URL (missing, empty or repeated: undefined). */
function sessionIdOf(url: string): string | undefined {
  const query = url.indexOf('?');
  const values = query < 0 ? [] : new URLSearchParams(url.slice(query + 1)).getAll('sessionId');
  return values.length === 1 && values[0] !== '' ? values[0] : undefined;
}

/**
 * Reads until the first complete SSE event (WHATWG HTML §9.2.6: events end with a blank line);
 * the body is paused after it, with what followed the event handed back in `rest`.
 */
function readFirstEvent(body: Readable): Promise<{ event: string; rest: Buffer } | undefined> {
  return new Promise((resolve) => {
    let buffered = Buffer.alloc(0);
    const done = (result: { event: string; rest: Buffer } | undefined) => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onEnd);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const match = /\r\n\r\n|\n\n|\r\r/.exec(buffered.toString('latin1'));
      if (match) {
        body.pause();
        const end = match.index + match[0].length;
        done({ event: buffered.subarray(0, end).toString('utf8'), rest: buffered.subarray(end) });
      } else if (buffered.length > 64 * 1024) {
        done(undefined);
      }
    };
    const onEnd = () => done(undefined);
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onEnd);
  });
}

function parseEvent(text: string): { event: string; data: string | undefined } {
  let event = 'message';
  const data: string[] = [];
  for (const line of text.split(/\r\n|\n|\r/)) {
    const colon = line.indexOf(':');
    if (colon === 0 || line === '') continue;
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return { event, data: data.length > 0 ? data.join('\n') : undefined };
}
