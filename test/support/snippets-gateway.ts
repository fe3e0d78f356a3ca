import pino from 'pino';
import { createFolderStorage } from '../../servers/snippets/folder-storage.ts';
import type { Clock } from '../../src/ports/clock.ts';
import type { Store } from '../../src/ports/store.ts';
import { type RunningSnippetsServer, startSnippetsServer } from '../../servers/snippets/http.ts';
import { type Harness, type HarnessOptions, startHarness } from './gateway-harness.ts';
import { freePort } from './ports.ts';
import { type BackendInput, type ProxyHarness, type ProxyHarnessOptions, startProxyHarness } from './proxy-harness.ts';

/**
 * The snippets sample server (folder storage in `dataDir`) behind a gateway harness on
 * http://localhost, as a newcomer runs them: Streamable HTTP at /mcp, legacy SSE at /mcp/sse,
 * the backend credential and the identity assertion checked by the server.
 */
export async function startSnippetsBehindGateway(
  dataDir: string,
  /** Extra keys of the snippets backend (e.g. `policy`, `scopes`). */
  backend: Record<string, unknown> = {},
  /** The gateway's port (default: a free one) and upstream IdP (default: the dev IdP). */
  harness: Pick<HarnessOptions, 'port' | 'upstream'> = {},
): Promise<{ gateway: Harness; snippets: RunningSnippetsServer; close(): Promise<void> }> {
  const port = harness.port ?? (await freePort());
  const snippets = await startSnippetsServer({
    storage: await createFolderStorage(dataDir),
    port: 0,
    functionKey: 'backend-key',
    identityJwksUrl: `http://localhost:${port}/.well-known/jwks.json`,
    identityAudience: `http://localhost:${port}/mcp`,
    logger: pino({ level: 'silent' }),
  });
  const gateway = await startHarness({
    port,
    ...(harness.upstream ? { upstream: harness.upstream } : {}),
    backends: [
      {
        name: 'snippets',
        path: '/mcp',
        url: snippets.mcpUrl,
        sseUrl: snippets.sseUrl,
        credential: { header: 'x-functions-key', value: 'backend-key' },
        ...backend,
      },
    ],
  });
  return {
    gateway,
    snippets,
    async close() {
      await gateway.close();
      await snippets.close();
    },
  };
}

/**
 * The snippets server behind the proxy harness (no sign-in pages: tokens from `tokenFor`), with the
 * backend credential and identity assertion checked, optionally a policy on the backend and an
 * audit trail of its operations. `stores`: one gateway replica per Store (sharing the first one's
 * public URL and signing key, as replicas behind a load balancer do), each closed with it.
 */
export async function startSnippetsBehindProxy(
  dataDir: string,
  options: { policy?: BackendInput['policy']; scopes?: string[]; audit?: ProxyHarnessOptions['audit']; clock?: Clock; stores?: Store[]; trustProxy?: ProxyHarnessOptions['trustProxy'] } = {},
): Promise<{ gateway: ProxyHarness; replicas: ProxyHarness[]; snippets: RunningSnippetsServer; close(): Promise<void> }> {
  // The gateway's URL (JWKS, audience) must be known before the snippets server starts.
  const snippetsPort = await freePort();
  const harness = (store: Store | undefined, replicaOf?: ProxyHarness) =>
    startProxyHarness({
      ...(options.audit ? { audit: options.audit } : {}),
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.trustProxy ? { trustProxy: options.trustProxy } : {}),
      ...(store ? { store } : {}),
      ...(replicaOf ? { replicaOf } : {}),
      backends: [
        {
          name: 'snippets',
          path: '/mcp',
          url: `http://127.0.0.1:${snippetsPort}/mcp`,
          sseUrl: `http://127.0.0.1:${snippetsPort}/sse`,
          credential: { header: 'x-functions-key', value: 'functions-key-1' },
          ...(options.policy ? { policy: options.policy } : {}),
          ...(options.scopes ? { scopes: options.scopes } : {}),
        },
      ],
    });
  const [first, ...others] = options.stores ?? [undefined];
  const gateway = await harness(first);
  const replicas = [gateway];
  for (const store of others) replicas.push(await harness(store, gateway));
  const snippets = await startSnippetsServer({
    storage: await createFolderStorage(dataDir),
    port: snippetsPort,
    functionKey: 'functions-key-1',
    identityJwksUrl: `${gateway.url}/.well-known/jwks.json`,
    identityAudience: `${gateway.url}/mcp`,
    identityIssuer: gateway.url,
    logger: pino({ level: 'silent' }),
  });
  return {
    gateway,
    replicas,
    snippets,
    async close() {
      for (const replica of replicas) await replica.close();
      await snippets.close();
    },
  };
}
