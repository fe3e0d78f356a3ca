import type { FastifyInstance } from 'fastify';
import type { UpstreamIdp } from '../ports/idp.ts';
import type { Store } from '../ports/store.ts';

const READINESS_TIMEOUT_MS = 2000;
const IDP_PROBE_INTERVAL_MS = 2000;
/** Prometheus exposition format 0.0.4. */
const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * /healthz (process alive) on both apps; /readyz (store and IdP reachable) and /metrics
 * (Prometheus text of the gateway's instruments, src/telemetry/metrics.ts) on `admin` only: they
 * tell who asks what runs and what it depends on, so they stay off the public listener
 * (docs/security.md).
 */
export function registerHealth(app: FastifyInstance, admin: FastifyInstance, deps: { store: Store; idp: UpstreamIdp; scrape: () => Promise<string> }) {
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
  admin.get('/metrics', async (_request, reply) => reply.header('content-type', PROMETHEUS_TEXT).send(await deps.scrape()));
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
