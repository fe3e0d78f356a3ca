import type { IncomingMessage, ServerResponse } from 'node:http';
import { context, propagation, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';

/**
 * Serves one request of the gateway's own routes (OAuth endpoints, pages, metadata) inside a
 * SERVER span (OpenTelemetry HTTP server span conventions), parented to the caller's
 * `traceparent` (W3C Trace Context §3). Work done for it (Store calls, upstream IdP calls) is
 * traced under it; the route name is set when fastify has matched it (httpRouteResolved).
 */
export function serveTraced(tracer: Tracer, req: IncomingMessage, res: ServerResponse, handler: (req: IncomingMessage, res: ServerResponse) => void): void {
  const parent = propagation.extract(ROOT_CONTEXT, req.headers);
  const method = req.method ?? 'GET';
  const span = tracer.startSpan(
    method,
    { kind: SpanKind.SERVER, attributes: { 'http.request.method': method, 'url.path': (req.url ?? '/').split('?')[0]!, 'url.scheme': 'http' } },
    parent,
  );
  res.once('close', () => {
    span.setAttribute('http.response.status_code', res.statusCode);
    // HTTP semconv: server spans are errors for 5xx only.
    if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  });
  context.with(trace.setSpan(parent, span), () => handler(req, res));
}

/** Names the active request span by its matched route (`POST /token`), keeping ids out of the name. */
export function httpRouteResolved(method: string, route: string): void {
  const span: Span | undefined = trace.getActiveSpan();
  if (span === undefined) return;
  span.updateName(`${method} ${route}`);
  span.setAttribute('http.route', route);
}
