/**
 * Entry point of the snippets MCP server: the only reader of process.env here.
 * Run: node servers/snippets/main.ts (Node 24)  (see README.md for the variables)
 */
import { resolve } from 'node:path';
import pino from 'pino';
import { createBlobStorage } from './blob-storage.ts';
import { createFolderStorage } from './folder-storage.ts';
import { DEFAULT_SNIPPETS_PORT, startSnippetsServer } from './http.ts';
import type { SnippetStorage } from './storage.ts';

const logger = pino({ name: 'snippets' }, pino.destination(2));

async function createStorage(env: NodeJS.ProcessEnv): Promise<SnippetStorage> {
  const kind = env['SNIPPETS_STORAGE'] ?? 'folder';
  if (kind === 'folder') {
    const dir = resolve(env['SNIPPETS_DATA_DIR'] ?? './data/snippets');
    logger.info({ storage: 'folder', dir }, 'snippet storage');
    return createFolderStorage(dir);
  }
  if (kind === 'blob') {
    const connectionString = env['AZURE_STORAGE_CONNECTION_STRING'];
    const accountUrl = env['AZURE_STORAGE_ACCOUNT_URL'];
    if (connectionString) {
      logger.info({ storage: 'blob', auth: 'connection string' }, 'snippet storage');
      return createBlobStorage({ connectionString });
    }
    if (accountUrl) {
      logger.info({ storage: 'blob', accountUrl, auth: 'DefaultAzureCredential' }, 'snippet storage');
      return createBlobStorage({ accountUrl });
    }
    throw new Error('SNIPPETS_STORAGE=blob needs AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL');
  }
  throw new Error(`SNIPPETS_STORAGE must be "folder" or "blob", got ${JSON.stringify(kind)}`);
}

function parsePort(value: string | undefined): number {
  if (value === undefined) return DEFAULT_SNIPPETS_PORT;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`SNIPPETS_PORT must be 0-65535, got ${JSON.stringify(value)}`);
  return port;
}

/** OTLP export is asked for by the standard variables: an endpoint or a traces exporter (OpenTelemetry SDK environment variables). */
function otlpConfigured(env: NodeJS.ProcessEnv): boolean {
  if (env['OTEL_SDK_DISABLED']?.trim().toLowerCase() === 'true' || env['OTEL_TRACES_EXPORTER']?.trim() === 'none') return false;
  return Boolean(env['OTEL_TRACES_EXPORTER'] || env['OTEL_EXPORTER_OTLP_ENDPOINT'] || env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']);
}

async function main(env: NodeJS.ProcessEnv): Promise<void> {
  const functionKey = env['SNIPPETS_FUNCTION_KEY'] || undefined;
  const allowNoKey = env['SNIPPETS_ALLOW_NO_KEY'] === '1';
  if (!functionKey && !allowNoKey) {
    throw new Error('SNIPPETS_FUNCTION_KEY is required (or set SNIPPETS_ALLOW_NO_KEY=1 to serve without a key)');
  }
  const identityJwksUrl = env['SNIPPETS_IDENTITY_JWKS_URL'] || undefined;
  const identityAudience = env['SNIPPETS_IDENTITY_AUDIENCE'] || undefined;
  if (identityJwksUrl && !identityAudience) {
    throw new Error('SNIPPETS_IDENTITY_AUDIENCE is required when SNIPPETS_IDENTITY_JWKS_URL is set');
  }
  const identityIssuer = env['SNIPPETS_IDENTITY_ISSUER'] || undefined;
  // OpenTelemetry only when configured: its packages load only then (the image runs without them).
  const telemetry = otlpConfigured(env) ? await (await import('./telemetry.ts')).startSnippetsTelemetry(env) : undefined;

  const running = await startSnippetsServer({
    storage: await createStorage(env),
    host: env['SNIPPETS_HOST'] || '127.0.0.1',
    port: parsePort(env['SNIPPETS_PORT']),
    allowNoKey,
    logger,
    ...(functionKey ? { functionKey } : {}),
    ...(identityJwksUrl ? { identityJwksUrl } : {}),
    ...(identityAudience ? { identityAudience } : {}),
    ...(identityIssuer ? { identityIssuer } : {}),
    ...(telemetry ? { tracing: telemetry.tracing } : {}),
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    running.close().then(async () => telemetry?.shutdown()).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main(process.env).catch((error: unknown) => {
  logger.fatal({ err: error }, (error as Error).message);
  process.exitCode = 1;
});
