import { SpanKind, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';
import type { UpstreamIdp } from '../ports/idp.ts';
import type { Store } from '../ports/store.ts';
import type { GatewayMetrics } from './metrics.ts';

const STORE_OPERATIONS = ['get', 'set', 'setIfAbsent', 'take', 'delete', 'addToSet', 'removeFromSet', 'members', 'increment', 'ping'] as const;
const IDP_OPERATIONS = ['authorizationUrl', 'completeSignIn', 'refresh', 'ping'] as const;

/**
 * The Store with each call timed and its failures counted (`mcpgw_store_*`), and, when a tracer
 * is given, a CLIENT span `store <operation>` under the request's span (never a trace of its own).
 */
export function instrumentStore(store: Store, metrics: GatewayMetrics, tracer: Tracer | undefined): Store {
  const instrumented = Object.create(store) as Store;
  for (const operation of STORE_OPERATIONS) {
    const call = (store[operation] as (...args: unknown[]) => Promise<unknown>).bind(store);
    const spanName = `store ${operation}`;
    (instrumented as unknown as Record<string, unknown>)[operation] = (...args: unknown[]) => {
      const started = performance.now();
      const span = tracer && trace.getActiveSpan() ? tracer.startSpan(spanName, { kind: SpanKind.CLIENT }) : undefined;
      return call(...args).then(
        (value) => {
          metrics.storeCall(operation, (performance.now() - started) / 1000, false);
          span?.end();
          return value;
        },
        (error: unknown) => {
          metrics.storeCall(operation, (performance.now() - started) / 1000, true);
          if (span) failed(span, error);
          throw error;
        },
      );
    };
  }
  instrumented.close = () => store.close();
  return instrumented;
}

/** The upstream IdP with a CLIENT span `idp <operation>` per call, under the request's span. */
export function traceIdp(idp: UpstreamIdp, tracer: Tracer): UpstreamIdp {
  const traced = Object.create(idp) as UpstreamIdp;
  for (const operation of IDP_OPERATIONS) {
    const call = (idp[operation] as (...args: unknown[]) => Promise<unknown>).bind(idp);
    (traced as unknown as Record<string, unknown>)[operation] = (...args: unknown[]) => {
      if (!trace.getActiveSpan()) return call(...args);
      return tracer.startActiveSpan(`idp ${operation}`, { kind: SpanKind.CLIENT, attributes: { 'gateway.upstream.kind': idp.kind } }, (span) =>
        call(...args).then(
          (value) => {
            span.end();
            return value;
          },
          (error: unknown) => {
            failed(span, error);
            throw error;
          },
        ),
      );
    };
  }
  return traced;
}

function failed(span: ReturnType<Tracer['startSpan']>, error: unknown): void {
  span.setAttribute('error.type', (error as Error)?.name ?? '_OTHER');
  span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message });
  span.end();
}
