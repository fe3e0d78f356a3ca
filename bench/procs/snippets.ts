import pino from 'pino';
import { createFolderStorage } from '../../servers/snippets/folder-storage.ts';
import { startSnippetsServer } from '../../servers/snippets/http.ts';
import { serveWorker, workerArgs } from '../lib/procs.ts';

export interface SnippetsWorkerArgs {
  dataDir: string;
  functionKey: string;
  /** The gateway's JWKS and resource: every call must carry its identity assertion. */
  identityJwksUrl: string;
  identityAudience: string;
}

/**
 * Benchmark 1's real backend: the snippets sample server (official SDK McpServer, Streamable
 * HTTP with sessions, SSE answers to POSTs, x-functions-key and the identity assertion checked on
 * every call), in its own process.
 */
const args = workerArgs<SnippetsWorkerArgs>();
const snippets = await startSnippetsServer({
  storage: await createFolderStorage(args.dataDir),
  port: 0,
  functionKey: args.functionKey,
  identityJwksUrl: args.identityJwksUrl,
  identityAudience: args.identityAudience,
  logger: pino({ level: 'silent' }),
});
serveWorker(
  { url: snippets.url },
  async (message) => {
    throw new Error(`unknown message ${String(message['type'])}`);
  },
  () => snippets.close(),
);
