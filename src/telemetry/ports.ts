import { type Attributes, SpanKind, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';
import type { UpstreamIdp } from '../ports/idp.ts';
import type { Store } from '../ports/store.ts';
import type { GatewayMetrics } from './metrics.ts';

const STORE_OPERATIONS = ['get', 'set', 'setIfAbsent', 'take', 'delete', 'addToSet', 'removeFromSet', 'members', 'increment', 'ping'] as const;
const IDP_OPERATIONS = ['authorizationUrl', 'completeSignIn', 'refresh', 'ping'] as const;

/** The Store with each call timed and its failures counted (`mcpgw_store_*`). */
export function instrumentStore(store: Store, metrics: GatewayMetrics): Store {
  const instrumented = wrapEach(store, STORE_OPERATIONS, (operation, call) => (...args) => {
    const started = performance.now();
    return call(...args).then(
      (value) => {
        metrics.storeCall(operation, (performance.now() - started) / 1000, false);
        return value;
      },
      (error: unknown) => {
        metrics.storeCall(operation, (performance.now() - started) / 1000, true);
        throw error;
      },
    );
  });
  instrumented.close = () => store.close();
  return instrumented;
}

/** What backs the Store, as the database client span conventions name it. */
export interface StoreDatabase {
  /** `db.system.name`: `sqlite` or `redis`. */
  system: 'sqlite' | 'redis';
  /** `server.address` / `server.port` of a Redis server (never its URL: it may carry a password). */
  address?: string;
  port?: number;
}

/** The kind of record a key holds: what precedes its first `:` (src/oauth/keys.ts), never the rest (ids, token hashes, user keys). */
function keyPrefix(key: unknown): string | undefined {
  if (typeof key !== 'string') return undefined;
  const end = key.indexOf(':');
  return end > 0 ? key.slice(0, end) : undefined;
}

/**
 * The Store with a CLIENT span per call, under the active span (an OAuth endpoint's request span,
 * src/telemetry/http.ts); a call outside any span makes none (never a trace of its own). Attributes
 * follow the database client span conventions (OpenTelemetry semantic conventions, Database spans):
 * `db.system.name`, `db.operation.name` (the Store operation: get, set, take …), `server.address`
 * / `server.port` for Redis, `error.type` on failure; the key's prefix (`grant`, `code`, `at` …)
 * stands for the collection (`db.collection.name`): each prefix is one kind of record
 * (docs/storage-keys.md), the Store's equivalent of a table. The span is named
 * `{db.operation.name} {db.collection.name}` (`take code`). Keys themselves never appear. Installed
 * only when spans are exported: a gateway without a tracer does not wrap the Store.
 */
export function traceStore(store: Store, tracer: Tracer, database: StoreDatabase): Store {
  const common: Attributes = { 'db.system.name': database.system };
  if (database.address !== undefined) common['server.address'] = database.address;
  if (database.port !== undefined) common['server.port'] = database.port;
  const traced = wrapEach(store, STORE_OPERATIONS, (operation, call) => (...args) => {
    if (!trace.getActiveSpan()) return call(...args);
    // delete(...keys) names its collection when every key is of one kind.
    const prefixes = new Set(operation === 'ping' ? [] : (operation === 'delete' ? args : args.slice(0, 1)).map(keyPrefix));
    const collection = prefixes.size === 1 ? [...prefixes][0] : undefined;
    const attributes: Attributes = { ...common, 'db.operation.name': operation };
    if (collection !== undefined) attributes['db.collection.name'] = collection;
    const span = tracer.startSpan(collection === undefined ? operation : `${operation} ${collection}`, { kind: SpanKind.CLIENT, attributes });
    return endedWith(span, call(...args));
  });
  traced.close = () => store.close();
  return traced;
}

/** The upstream IdP with a CLIENT span `idp <operation>` per call, under the request's span. */
export function traceIdp(idp: UpstreamIdp, tracer: Tracer): UpstreamIdp {
  return wrapEach(idp, IDP_OPERATIONS, (operation, call) => (...args) => {
    if (!trace.getActiveSpan()) return call(...args);
    return tracer.startActiveSpan(`idp ${operation}`, { kind: SpanKind.CLIENT, attributes: { 'gateway.upstream.kind': idp.kind } }, (span) =>
      endedWith(span, call(...args)),
    );
  });
}

type Call = (...args: unknown[]) => Promise<unknown>;

/** `target` with each of `operations` replaced by `wrap` of its bound method; everything else inherited from it. */
function wrapEach<T extends object, K extends keyof T & string>(target: T, operations: readonly K[], wrap: (operation: K, call: Call) => Call): T {
  const wrapped = Object.create(target) as T;
  for (const operation of operations) {
    (wrapped as Record<string, unknown>)[operation] = wrap(operation, (target[operation] as Call).bind(target));
  }
  return wrapped;
}

/** `call`'s outcome, `span` ended when it settles (a failure recorded on it first). */
function endedWith<T>(span: ReturnType<Tracer['startSpan']>, call: Promise<T>): Promise<T> {
  return call.then(
    (value) => {
      span.end();
      return value;
    },
    (error: unknown) => {
      failed(span, error);
      throw error;
    },
  );
}

function failed(span: ReturnType<Tracer['startSpan']>, error: unknown): void {
  span.setAttribute('error.type', (error as Error)?.name ?? '_OTHER');
  span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message });
  span.end();
}
