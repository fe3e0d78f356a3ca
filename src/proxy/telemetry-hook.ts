import type { IncomingHttpHeaders } from 'node:http';
import {
  type Attributes,
  type Context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { GatewayMetrics } from '../telemetry/metrics.ts';
import { isObject } from './jsonrpc.ts';

/** What the MCP routes record with: always metrics; spans only when an SDK exports them. */
export interface ProxyTelemetry {
  metrics: GatewayMetrics;
  tracer: Tracer | undefined;
}

/** One MCP operation's spans (OpenTelemetry MCP semantic conventions, gen-ai/mcp.md). */
export interface OperationSpans {
  /** SERVER: the operation as the gateway serves it, from the body read to the answer. */
  server: Span;
  /** CLIENT: the gateway's exchange with the backend, once sent; none when the SERVER span is not sampled. */
  client?: Span;
  name: string;
}

/**
 * The CLIENT span's: the conventions' MCP client attributes (gen-ai/mcp.md, Client); who called
 * is on its SERVER span.
 */
const CLIENT_SPAN_FIELDS = [
  'mcp.method.name',
  'gen_ai.tool.name',
  'gen_ai.prompt.name',
  'mcp.resource.uri',
  'jsonrpc.request.id',
  'mcp.session.id',
  'mcp.protocol.version',
] as const;

/** Audit fields that are also SERVER span attributes under the same names (the audit trail uses the conventions' names). */
const SPAN_FIELDS = [...CLIENT_SPAN_FIELDS, 'mcp.backend', 'oauth.client.id', 'user.id', 'user.name', 'user.tenant.id', 'client.address'] as const;

/** `{mcp.method.name} {target}`, the target being the tool or prompt name (gen-ai/mcp.md, Server: span name). */
function spanName(fields: Record<string, unknown>): string {
  const target = fields['gen_ai.tool.name'] ?? fields['gen_ai.prompt.name'];
  return target === undefined ? String(fields['mcp.method.name']) : `${fields['mcp.method.name']} ${target}`;
}

function spanAttributes(fields: Record<string, unknown>, names: readonly string[]): Attributes {
  const attributes: Attributes = {};
  for (const name of names) {
    const value = fields[name];
    if (typeof value === 'string' || typeof value === 'number') attributes[name] = value;
  }
  if (fields['mcp.method.name'] === 'tools/call') attributes['gen_ai.operation.name'] = 'execute_tool';
  return attributes;
}

/**
 * The SERVER span of one operation. Its parent is the trace context in the message's
 * `params._meta` when there is one (gen-ai/mcp.md, Context propagation), else the HTTP request's
 * `traceparent` (W3C Trace Context §3). Attributes are built only for a span that records (the
 * SDK's samplers decide on the trace id and parent alone).
 */
export function startServerSpan(tracer: Tracer, fields: Record<string, unknown>, meta: unknown, headers: IncomingHttpHeaders): OperationSpans {
  const parent =
    isObject(meta) && typeof meta['traceparent'] === 'string'
      ? propagation.extract(ROOT_CONTEXT, meta)
      : carriesContext(headers)
        ? propagation.extract(ROOT_CONTEXT, headers)
        : ROOT_CONTEXT;
  const name = spanName(fields);
  const server = tracer.startSpan(name, { kind: SpanKind.SERVER }, parent);
  if (server.isRecording()) server.setAttributes(spanAttributes(fields, SPAN_FIELDS));
  return { server, name };
}

/** The headers the W3C propagators (the SDK's default, `tracecontext,baggage`) read, which are all they write. */
const W3C_FIELDS: ReadonlySet<string> = new Set(['traceparent', 'tracestate', 'baggage']);

/**
 * Whether extracting the request's context could find one: with the W3C propagators only when it
 * has one of their headers (most calls have none, and extracting from nothing still costs each
 * propagator's work); with any other (B3, Jaeger) always, as they read more headers than their
 * `fields()` name (B3 single and multi, Jaeger's `uberctx-*`).
 */
function carriesContext(headers: IncomingHttpHeaders): boolean {
  const fields = propagation.fields();
  let found = false;
  for (const field of fields) {
    if (!W3C_FIELDS.has(field)) return true;
    if (headers[field] !== undefined) found = true;
  }
  return found;
}

/** The backend's address attributes, per backend URL (one object per configured URL). */
const endpoints = new WeakMap<URL, Attributes>();

function endpointOf(url: URL): Attributes {
  let endpoint = endpoints.get(url);
  if (endpoint === undefined) {
    endpoint = {
      'server.address': url.hostname,
      'server.port': Number(url.port) || (url.protocol === 'https:' ? 443 : 80),
      'network.protocol.name': 'http',
    };
    endpoints.set(url, endpoint);
  }
  return endpoint;
}

/**
 * The CLIENT span of the backend exchange, under the operation's SERVER span; none under a SERVER
 * span that is not sampled (it would not be either: the backend gets the SERVER span's context).
 */
export function startClientSpan(tracer: Tracer, spans: OperationSpans, fields: Record<string, unknown>, backendUrl: URL): void {
  if (!spans.server.isRecording()) return;
  const attributes = spanAttributes(fields, CLIENT_SPAN_FIELDS);
  Object.assign(attributes, endpointOf(backendUrl));
  spans.client = tracer.startSpan(spans.name, { kind: SpanKind.CLIENT, attributes }, trace.setSpan(ROOT_CONTEXT, spans.server));
}

/** The span whose context goes to the backend: the exchange's, or the operation's when it is not sampled. */
export function propagated(spans: OperationSpans): Span {
  return spans.client ?? spans.server;
}

/** `traceparent` and `tracestate` of `span` (W3C Trace Context §3.2, §3.3), written into `carrier`. */
export function injectContext(span: Span, carrier: Record<string, unknown>): void {
  const context: Context = trace.setSpan(ROOT_CONTEXT, span);
  propagation.inject(context, carrier);
}

/**
 * `error.type` of an answered operation (gen-ai/mcp.md, note on error.type): `tool_error` for a
 * tool result with isError, the JSON-RPC error code, or the HTTP status of an exchange that ended
 * without an answer (a gateway 502/504, a refusal); undefined on success.
 */
export function errorTypeOf(fields: Record<string, unknown>): string | undefined {
  if (fields['error.type'] !== undefined) return String(fields['error.type']);
  const code = fields['rpc.jsonrpc.error_code'];
  if (code !== undefined) return String(code);
  const status = Number(fields['http.response.status_code']);
  return status >= 400 ? String(status) : undefined;
}

/**
 * Ends an operation: its durations recorded (`mcp.server.operation.duration`, and
 * `mcp.client.operation.duration` when it reached the backend) and its spans ended with
 * `error.type` and ERROR status on failure (gen-ai/mcp.md, Span status).
 */
export function endOperation(
  telemetry: ProxyTelemetry,
  fields: Record<string, unknown>,
  spans: OperationSpans | undefined,
  seconds: { server: number; client: number | undefined },
): void {
  const errorType = errorTypeOf(fields);
  const attributes: Attributes = { 'mcp.method.name': String(fields['mcp.method.name']), 'mcp.backend': String(fields['mcp.backend']) };
  const tool = fields['gen_ai.tool.name'];
  if (typeof tool === 'string') attributes['gen_ai.tool.name'] = tool;
  if (errorType !== undefined) attributes['error.type'] = errorType;
  telemetry.metrics.serverOperation.record(seconds.server, attributes);
  if (seconds.client !== undefined) telemetry.metrics.clientOperation.record(seconds.client, attributes);
  if (spans === undefined) return;
  if (spans.client !== undefined) endSpan(spans.client, fields, errorType);
  endSpan(spans.server, fields, errorType);
}

function endSpan(span: Span, fields: Record<string, unknown>, errorType: string | undefined): void {
  if (span.isRecording()) {
    span.setAttribute('http.response.status_code', Number(fields['http.response.status_code']));
    const code = fields['rpc.jsonrpc.error_code'];
    if (code !== undefined) span.setAttribute('rpc.response.status_code', String(code));
    if (errorType !== undefined) {
      span.setAttribute('error.type', errorType);
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
  }
  span.end();
}
