import pino from 'pino';
import { createFolderStorage } from '../../servers/snippets/folder-storage.ts';
import { type RunningSnippetsServer, startSnippetsServer } from '../../servers/snippets/http.ts';
import { type Harness, startHarness } from './gateway-harness.ts';
import { freePort } from './ports.ts';

/**
 * The snippets sample server (folder storage in `dataDir`) behind a gateway harness on
 * http://localhost, as a newcomer runs them: Streamable HTTP at /mcp, legacy SSE at /mcp/sse,
 * the backend credential and the identity assertion checked by the server.
 */
export async function startSnippetsBehindGateway(dataDir: string): Promise<{ gateway: Harness; snippets: RunningSnippetsServer; close(): Promise<void> }> {
  const port = await freePort();
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
    backends: [
      {
        name: 'snippets',
        path: '/mcp',
        url: snippets.mcpUrl,
        sseUrl: snippets.sseUrl,
        credential: { header: 'x-functions-key', value: 'backend-key' },
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
