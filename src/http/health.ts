import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Audit } from '../audit/audit.ts';
import type { UpstreamIdp } from '../ports/idp.ts';
import type { Store } from '../ports/store.ts';
import type { RawRoutes } from './app.ts';

const READINESS_TIMEOUT_MS = 2000;
const IDP_PROBE_INTERVAL_MS = 2000;

/**
 * /healthz (process alive) on both apps; /readyz (store and IdP reachable) and /metrics
 * (Prometheus, counting `app`'s requests) on `admin` only: they tell who asks what runs and what
 * it depends on, so they stay off the public listener (docs/security.md).
 */
export function registerHealth(app: FastifyInstance, admin: FastifyInstance, deps: { store: Store; idp: UpstreamIdp; audit?: Audit; raw: RawRoutes }) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const audit = deps.audit;
  if (audit) {
    // Read from the audit trail's own counts at scrape time (one source of truth).
    for (const [name, help, pick] of [
      ['mcpgw_audit_records_written', 'Audit records handed to the sink since start', 'written'],
      ['mcpgw_audit_records_dropped', 'Audit records dropped because the sink was slow or down, since start', 'dropped'],
      ['mcpgw_audit_records_queued', 'Audit records waiting for the sink', 'queued'],
    ] as const) {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(audit.stats()[pick]);
        },
      });
    }
  }
  const requests = new Counter({
    name: 'mcpgw_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['route', 'method', 'status'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'mcpgw_http_request_duration_seconds',
    help: 'Time to response headers',
    labelNames: ['route'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5],
    registers: [registry],
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    requests.inc({ route, method: request.method, status: reply.statusCode });
    duration.observe({ route }, reply.elapsedTime / 1000);
  });
  // Raw (non-fastify) routes: the same two metrics, with the label children cached per value.
  const counters = new Map<string, Counter.Internal>();
  const timers = new Map<string, Histogram.Internal<'route'>>();
  deps.raw.observe((route, method, status, seconds) => {
    const key = `${route} ${method} ${status}`;
    let counter = counters.get(key);
    if (!counter) {
      counter = requests.labels({ route, method, status });
      counters.set(key, counter);
    }
    counter.inc();
    let timer = timers.get(route);
    if (!timer) {
      timer = duration.labels({ route });
      timers.set(route, timer);
    }
    timer.observe(seconds);
  });

  for (const target of [app, admin]) target.get('/healthz', async () => ({ status: 'ok' }));
  // The IdP probe fetches its metadata: probe at most once per interval, however often /readyz is hit.
  let idpProbe: { at: number; result: Promise<'ok' | 'unreachable'> } | undefined;
  const probeIdp = () => {
    if (!idpProbe || Date.now() - idpProbe.at >= IDP_PROBE_INTERVAL_MS) idpProbe = { at: Date.now(), result: check(() => deps.idp.ping()) };
    return idpProbe.result;
  };
  admin.get('/readyz', async (_request, reply) => {
    const [store, idp] = await Promise.all([check(() => deps.store.ping()), probeIdp()]);
    const ready = store === 'ok' && idp === 'ok';
    return reply.code(ready ? 200 : 503).header('cache-control', 'no-store').send({ status: ready ? 'ready' : 'not_ready', store, idp });
  });
  admin.get('/metrics', async (_request, reply) => reply.header('content-type', registry.contentType).send(await registry.metrics()));
}

async function check(probe: () => Promise<void>): Promise<'ok' | 'unreachable'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'unreachable'>((resolve) => {
    timer = setTimeout(() => resolve('unreachable'), READINESS_TIMEOUT_MS);
  });
  try {
    return await Promise.race([probe().then(() => 'ok' as const, () => 'unreachable' as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
