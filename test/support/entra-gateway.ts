import { type DownstreamBackend, type PullSettings, startDownstreamBackend } from './downstream-backend.ts';
import { ENTRA_TEST_TENANT, type EntraShapedIdp, startEntraShapedIdp } from './entra-shaped-idp.ts';
import { type FakeGraph, startFakeGraph } from './fake-graph.ts';
import { type Harness, type HarnessOptions, startHarness } from './gateway-harness.ts';
import { freePort } from './ports.ts';

type EntraShapedIdpOptions = Parameters<typeof startEntraShapedIdp>[0];

/**
 * The Entra look-alike with the gateway's app registration (`gateway-app`, signing in with a
 * secret) whose callback is the gateway's at http://localhost:{port}; `options` add to or replace it.
 */
export function startGatewayAppIdp(port: number, options: Partial<EntraShapedIdpOptions> = {}): Promise<EntraShapedIdp> {
  return startEntraShapedIdp({
    client: { clientId: 'gateway-app', clientSecret: 'gateway-secret', redirectUris: [`http://localhost:${port}/callback`] },
    ...options,
  });
}

/** The harness's `upstream`: the gateway signs in at the Entra look-alike as `gateway-app` with its secret. */
export function entraUpstream(idp: EntraShapedIdp) {
  return {
    entra: {
      tenantId: ENTRA_TEST_TENANT,
      clientId: 'gateway-app',
      clientSecret: 'gateway-secret',
      authorityHost: idp.authorityHost,
      scopes: ['openid', 'profile', 'email', 'offline_access'],
    },
  };
}

/** The gateway in front of the downstream backend, signing in at the Entra look-alike, with a fake Graph. */
export interface EntraDownstream {
  idp: EntraShapedIdp;
  graph: FakeGraph;
  backend: DownstreamBackend;
  gw: Harness;
  /** Closes the gateway, the backend, Graph and the look-alike, in that order. */
  close(): Promise<void>;
}

/**
 * Starts the look-alike (the gateway's app, `idp` changing its options), a fake Graph that trusts its
 * tokens, the downstream backend (pulling at the gateway's /token with `pull`, when given) and the
 * gateway harness with what `gateway` returns (`upstream` defaults to entraUpstream). What started
 * is closed again when a later step fails.
 */
export async function startEntraDownstream(options: {
  idp?: Partial<EntraShapedIdpOptions>;
  pull?: Omit<PullSettings, 'tokenUrl'>;
  gateway: (started: { idp: EntraShapedIdp; backend: DownstreamBackend }) => Omit<HarnessOptions, 'port'>;
}): Promise<EntraDownstream> {
  const port = await freePort();
  const started: { close(): Promise<void> }[] = [];
  try {
    const idp = await startGatewayAppIdp(port, options.idp);
    started.unshift(idp);
    const graph = await startFakeGraph({ issuer: idp.accessTokenIssuer, jwksUri: idp.jwksUri });
    started.unshift(graph);
    const backend = await startDownstreamBackend({
      graphUrl: graph.url,
      ...(options.pull ? { pull: { tokenUrl: `http://localhost:${port}/token`, ...options.pull } } : {}),
    });
    started.unshift(backend);
    const gw = await startHarness({ port, upstream: entraUpstream(idp), ...options.gateway({ idp, backend }) });
    started.unshift(gw);
    return {
      idp,
      graph,
      backend,
      gw,
      async close() {
        for (const server of started) await server.close();
      },
    };
  } catch (error) {
    for (const server of started) await server.close();
    throw error;
  }
}
