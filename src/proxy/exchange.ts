import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Audit } from '../audit/audit.ts';
import type { RawRoutes } from '../http/app.ts';
import type { ParsedBody } from '../http/parsed-body.ts';
import { onResponseClose } from '../http/raw-response.ts';
import type { Enforcer } from '../policy/enforce.ts';
import type { ProtectedResource } from '../oauth/resources.ts';
import {
  type BackendRequest,
  type BackendResponse,
  type Forwarder,
  forwardedRequestHeaders,
  forwardedResponseHeaders,
  isEventStream,
  relayDirectly,
  wholeBody,
} from './forward.ts';
import { GatewayError, JSONRPC_SERVER_ERROR, jsonRpcError, sendGatewayError, TruncatedResponseError } from './errors.ts';
import type { Admitted } from './gate.ts';
import type { DownstreamPush } from './downstream-push.ts';
import type { IdentityAssertions } from './identity-assertion.ts';
import { isObject } from './jsonrpc.ts';
import { type KeepAlive, relay, ResponseSink } from './relay.ts';
import type { SseWatcher } from './sse-events.ts';
import type { ProxyTelemetry } from './telemetry-hook.ts';

export interface ProxyContext {
  /** The client's address for the audit trail, trustProxy honoured (createHttpApp's clientIp). */
  clientIp: (req: IncomingMessage) => string | undefined;
  forwarders: Map<string, Forwarder>;
  assertions: IdentityAssertions;
  /** The keep-alive ticker of every SSE stream relayed. */
  keepAlive: KeepAlive;
  /** An MCP POST body must arrive within this, from when it is read (config timeouts.mcpBodyMs). */
  bodyTimeoutMs: number;
  logger: Logger;
  /**
   * Aborts of the long-lived streams in flight (GET streams, 2026-07-28 subscriptions/listen),
   * called when the server closes so they end. Other POSTs drain instead.
   */
  active: Set<() => void>;
  /** The policy of each backend that has rules (by backend name). */
  enforcers: Map<string, Enforcer>;
  /** The app's raw routes: `closing` once shutdown began (new streams are then refused). */
  routes: RawRoutes;
  /** The audit trail of MCP operations; undefined when its sink is off (nothing parsed for it). */
  audit: Audit | undefined;
  /** Metrics, and spans when exported (src/proxy/telemetry-hook.ts). Operations are read when audit or spans are on. */
  telemetry: ProxyTelemetry;
  /** The push of downstream tokens, by backend name (only backends that push any). */
  downstream: Map<string, DownstreamPush>;
}

/** What a backend receives: the allowed client headers, its credential, and who is calling. */
export function backendHeaders(
  ctx: ProxyContext,
  incoming: IncomingHttpHeaders,
  caller: Admitted,
  resource: ProtectedResource,
  body?: ParsedBody,
): Record<string, string> | Promise<Record<string, string>> {
  const headers = forwardedRequestHeaders(incoming);
  const { credential, identityAssertion } = resource.backend;
  if (credential) headers[credential.header.toLowerCase()] = credential.value;
  const name = identityAssertion.header.toLowerCase();
  const exchangeable = resource.backend.tokenExchange !== undefined;
  const assertion = ctx.assertions.assertionFor(caller.token, caller.record, resource.resource, identityAssertion.ttlSeconds, exchangeable);
  const push = resource.backend.downstreamTokens ? ctx.downstream.get(resource.name) : undefined;
  // A cached assertion is added without a promise when no downstream token is pushed (this runs on every call).
  if (!(assertion instanceof Promise) && !push) {
    headers[name] = assertion;
    return headers;
  }
  return withAssertionAndPush(headers, name, assertion, push && (() => push(headers, caller, body)));
}

async function withAssertionAndPush(
  headers: Record<string, string>,
  name: string,
  assertion: string | Promise<string>,
  push: (() => Promise<void>) | undefined,
): Promise<Record<string, string>> {
  headers[name] = await assertion;
  if (push) await push();
  return headers;
}

/**
 * Sends the request to the backend. A client that goes away aborts it (and later its body).
 * Undefined when an error answer was already sent (or the client is gone). `longLived` streams
 * (default: GET) are refused once shutdown began and ended when it begins.
 */
export async function openBackend(
  ctx: ProxyContext,
  res: ServerResponse,
  resource: ProtectedResource,
  backendRequest: BackendRequest,
  longLived = backendRequest.method === 'GET',
): Promise<BackendResponse | undefined> {
  const isStream = longLived;
  if (isStream && ctx.routes.closing) {
    // Admitted just before shutdown began, after the open streams were ended: refused, so no
    // new stream holds the server open.
    sendGatewayError(res, new GatewayError(503, 'Service Unavailable: the gateway is shutting down'));
    return undefined;
  }
  const exchange = ctx.forwarders.get(resource.name)!.request(backendRequest);
  let aborted = false;
  const abort = () => {
    aborted = true;
    exchange.abort();
  };
  if (isStream) ctx.active.add(abort);
  // The raw route's own close listener runs this (no listener per call).
  onResponseClose(res, () => {
    if (isStream) ctx.active.delete(abort);
    if (!res.writableFinished) abort();
  });
  try {
    return await exchange.response;
  } catch (error) {
    if (aborted) return undefined;
    if (error instanceof TruncatedResponseError) {
      res.destroy(); // as relay: a truncated body must not pass for a complete one
      return undefined;
    }
    if (!(error instanceof GatewayError)) throw error;
    ctx.logger.warn({ backend: resource.name, status: error.status, err: error.cause ?? error }, 'backend request failed');
    sendGatewayError(res, error);
    return undefined;
  }
}

/**
 * Sends the backend's answer to the client; `prefix` is written before its body (legacy endpoint
 * event); `watcher` reads an SSE answer's events as they pass. A streamed answer is relayed as it
 * arrives (and keeps going after this returns).
 */
export function sendBackendResponse(
  ctx: ProxyContext,
  res: ServerResponse,
  response: BackendResponse,
  options: { prefix?: string; requestBody?: Buffer; watcher?: SseWatcher | undefined } = {},
): void {
  // CORS headers set by the gate on `res` are merged in by writeHead.
  const headers = forwardedResponseHeaders(response.headers);
  const whole = wholeBody(response);
  if (whole !== undefined) {
    // A small answer of known length (a JSON-RPC response), collected whole by the forwarder,
    // goes out with its headers in one write; only streams and large bodies are relayed.
    // RFC 9110 §8.6: no Content-Length on a 204 (nor on a 304, whose body is absent anyway).
    if (response.statusCode !== 204 && response.statusCode !== 304) headers['content-length'] = whole.length;
    res.writeHead(response.statusCode, headers);
    res.end(whole);
    return;
  }
  // MCP streamable-http §Receiving Messages: tell buffering reverse proxies to pass SSE through.
  const sse = isEventStream(response.headers['content-type']);
  if (sse) headers['x-accel-buffering'] = 'no';
  const requestBody = options.requestBody;
  const sink = new ResponseSink(res, response.statusCode, headers, {
    sse,
    keepAlive: ctx.keepAlive,
    prefix: options.prefix,
    lastWords: requestBody ? () => brokenStreamEvent(requestBody) : undefined,
    watcher: options.watcher,
  });
  if (!relayDirectly(response, sink)) relay(response.body as Readable, res, sink);
}

/**
 * When a backend's SSE answer to a POST dies before the end, the client would wait for its own
 * timeout: answer each request id of the (small, buffered) POST body with a JSON-RPC error event.
 */
function brokenStreamEvent(requestBody: Buffer): string | undefined {
  let message: unknown;
  try {
    message = JSON.parse(requestBody.toString('utf8'));
  } catch {
    return undefined;
  }
  const requests = (Array.isArray(message) ? message : [message]).filter(
    (m): m is { id: string | number } => isObject(m) && typeof m['method'] === 'string' && (typeof m['id'] === 'string' || typeof m['id'] === 'number'),
  );
  return requests
    .map((r) => `event: message\ndata: ${JSON.stringify(jsonRpcError(JSONRPC_SERVER_ERROR, 'Bad Gateway: the backend stream ended before the response', r.id))}\n\n`)
    .join('') || undefined;
}
