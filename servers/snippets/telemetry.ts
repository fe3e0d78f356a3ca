/**
 * Traces of the snippets server, loaded (a dynamic import) only when telemetry is configured:
 * without it the server imports no OpenTelemetry package at all.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { context, propagation, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';
import type { SnippetStorage } from './storage.ts';

const SCOPE_NAME = 'mcp-snippets';

export interface SnippetsTracing {
  /**
   * Runs the handling of one MCP POST inside its SERVER span (OpenTelemetry MCP semantic
   * conventions, gen-ai/mcp.md): named `{mcp.method.name} {tool}`, parented to the trace context
   * in `params._meta` when there is one, else to the HTTP `traceparent` (W3C Trace Context §3);
   * it ends with the response.
   */
  serve<T>(req: IncomingMessage, res: ServerResponse, body: unknown, handle: () => Promise<T>): Promise<T>;
  /** The storage with a CLIENT span per call (`storage get`, …) under the request's span. */
  storage(storage: SnippetStorage): SnippetStorage;
}

export function createSnippetsTracing(tracer: Tracer = trace.getTracer(SCOPE_NAME)): SnippetsTracing {
  return {
    serve(req, res, body, handle) {
      const message = isObject(body) ? body : {};
      const method = typeof message['method'] === 'string' ? message['method'] : undefined;
      const params = isObject(message['params']) ? message['params'] : {};
      const meta = params['_meta'];
      const parent =
        isObject(meta) && typeof meta['traceparent'] === 'string' ? propagation.extract(ROOT_CONTEXT, meta) : propagation.extract(ROOT_CONTEXT, req.headers);
      const tool = method === 'tools/call' && typeof params['name'] === 'string' ? params['name'] : undefined;
      const span = tracer.startSpan(tool ? `${method} ${tool}` : (method ?? `${req.method} /mcp`), { kind: SpanKind.SERVER }, parent);
      if (method) span.setAttribute('mcp.method.name', method);
      if (tool) {
        span.setAttribute('gen_ai.tool.name', tool);
        span.setAttribute('gen_ai.operation.name', 'execute_tool');
      }
      const id = message['id'];
      if (typeof id === 'string' || typeof id === 'number') span.setAttribute('jsonrpc.request.id', String(id));
      for (const [name, attribute] of [
        ['mcp-session-id', 'mcp.session.id'],
        ['mcp-protocol-version', 'mcp.protocol.version'],
      ] as const) {
        const value = req.headers[name];
        if (typeof value === 'string') span.setAttribute(attribute, value);
      }
      res.once('close', () => {
        span.setAttribute('http.response.status_code', res.statusCode);
        if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      });
      return context.with(trace.setSpan(parent, span), handle);
    },
    storage(storage) {
      const traced = (operation: keyof SnippetStorage) =>
        ((...args: unknown[]) =>
          tracer.startActiveSpan(`storage ${operation}`, { kind: SpanKind.CLIENT }, (span) =>
            (storage[operation] as (...a: unknown[]) => Promise<unknown>).apply(storage, args).then(
              (value) => {
                span.end();
                return value;
              },
              (error: unknown) => {
                failed(span, error);
                throw error;
              },
            ),
          )) as never;
      return { save: traced('save'), get: traced('get'), list: traced('list'), delete: traced('delete') };
    },
  };
}

function failed(span: Span, error: unknown): void {
  span.setAttribute('error.type', (error as Error)?.name ?? '_OTHER');
  span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message });
  span.end();
}

/**
 * The OpenTelemetry Node SDK with OTLP exporters, configured by the standard OTEL_* variables
 * (endpoint, protocol incl. http/json, sampler); service.name `mcp-snippets` unless OTEL_SERVICE_NAME says.
 */
export async function startSnippetsTelemetry(env: NodeJS.ProcessEnv): Promise<{ tracing: SnippetsTracing; shutdown(): Promise<void> }> {
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const sdk = new NodeSDK({ instrumentations: [], metricReaders: [], ...(env['OTEL_SERVICE_NAME'] ? {} : { serviceName: SCOPE_NAME }) });
  sdk.start();
  return { tracing: createSnippetsTracing(), shutdown: () => sdk.shutdown() };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
