import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import pino from 'pino';
import { stringify } from 'yaml';
import { createFolderStorage } from '../servers/snippets/folder-storage.ts';
import { startSnippetsServer } from '../servers/snippets/http.ts';
import { type Config, ConfigError, loadConfig } from './config/load.ts';
import { connectionGuide, devConfig, loadOrCreateDevSecrets } from './dev.ts';
import { type RunningGateway, startGateway } from './gateway.ts';
import { startTelemetry, type Telemetry, telemetryExport } from './telemetry/sdk.ts';

/**
 * Composition root: the only reader of process.env. `serve` runs the gateway from a config file;
 * `dev` runs the whole system on embedded defaults.
 */
export async function serve(configPath: string | undefined): Promise<void> {
  const env = process.env;
  const config = configOrExit(
    () => {
      const yamlText = configPath ? readFileSync(resolve(configPath), 'utf8') : undefined;
      return loadConfig({ yamlText, fileName: configPath, baseDir: configPath ? dirname(resolve(configPath)) : process.cwd(), env });
    },
    configPath ? undefined : 'no config file given: pass --config FILE (mcp-entra-gateway serve --help; docs/configuration.md)',
  );
  const telemetry = await startTelemetry(telemetryExport(env), env);
  const gateway = await startGateway(config, { env, telemetry }).catch((error: unknown) => {
    throw listenError(error, [
      [config.listen.port, 'listen.port (or MCPGW_LISTEN__PORT)'],
      [config.admin.listen.port, 'admin.listen.port (or MCPGW_ADMIN__LISTEN__PORT)'],
      [config.upstream.dev?.port, 'upstream.dev.port'],
    ]);
  });
  stopOnSignals([thenFlush([gateway], telemetry)], config.shutdownGraceSeconds);
}

export async function dev(options: { port: number; idpPort: number; snippetsPort: number; adminPort: number; dataDir: string }): Promise<void> {
  const env = process.env;
  const dataDir = resolve(options.dataDir);
  const secrets = loadOrCreateDevSecrets(dataDir);
  const publicUrl = `http://localhost:${options.port}`;
  const logger = pino({ level: env['LOG_LEVEL'] ?? 'warn' });
  const flags: [number, string][] = [
    [options.port, '--port'],
    [options.idpPort, '--idp-port'],
    [options.snippetsPort, '--snippets-port'],
    [options.adminPort, '--admin-port'],
  ];
  const telemetry = await startTelemetry(telemetryExport(env), env);
  // The in-process snippets server traces with the same SDK (its telemetry module loads only then).
  const tracing = telemetry.tracer ? (await import('../servers/snippets/telemetry.ts')).createSnippetsTracing() : undefined;
  const snippets = await startSnippetsServer({
    ...(tracing ? { tracing } : {}),
    storage: await createFolderStorage(join(dataDir, 'snippets')),
    port: options.snippetsPort,
    functionKey: secrets.functionKey,
    identityJwksUrl: `${publicUrl}/.well-known/jwks.json`,
    identityAudience: `${publicUrl}/mcp`,
    identityIssuer: publicUrl,
    logger: logger.child({ name: 'snippets' }),
  }).catch((error: unknown) => {
    throw listenError(error, flags);
  });
  const yamlText = stringify(
    devConfig({ dataDir, port: options.port, idpPort: options.idpPort, adminPort: options.adminPort, snippetsUrl: snippets.url, secrets }),
  );
  const config = configOrExit(() => loadConfig({ yamlText, env }));
  const gateway = await startGateway(config, { env, logger, telemetry }).catch((error: unknown) => {
    throw listenError(error, flags);
  });
  process.stdout.write(connectionGuide(publicUrl, gateway.adminUrl, secrets.users, config.audit.file.path));
  stopOnSignals([thenFlush([gateway, snippets], telemetry)], config.shutdownGraceSeconds);
}

/** Closes `parts`, then flushes what telemetry still holds (spans of the last requests). */
function thenFlush(parts: { close(): Promise<void> }[], telemetry: Telemetry): { close(): Promise<void> } {
  return {
    async close() {
      await Promise.all(parts.map((part) => part.close()));
      // Spans that cannot be delivered now are lost, but the stop is still clean.
      await telemetry.shutdown().catch((error: unknown) => process.stderr.write(`telemetry not flushed: ${(error as Error).message}\n`));
    },
  };
}

/**
 * A port that is taken (or not ours to bind) named by the flag or config key that sets it:
 * `listen.port (or MCPGW_LISTEN__PORT): port 8080 on 127.0.0.1 is already in use`.
 */
function listenError(error: unknown, settings: [number | undefined, string][]): unknown {
  const { code, syscall, port, address } = error as NodeJS.ErrnoException & { port?: number; address?: string };
  if (syscall !== 'listen' || (code !== 'EADDRINUSE' && code !== 'EACCES')) return error;
  const setting = settings.find(([candidate]) => candidate === port)?.[1] ?? 'a listen port';
  const reason = code === 'EADDRINUSE' ? 'is already in use' : 'may not be bound by this user';
  return new Error(`${setting}: port ${port} on ${address} ${reason}; choose another`);
}

function configOrExit(load: () => Config, hint?: string): Config {
  try {
    return load();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${[...error.problems, ...(hint ? [hint] : [])].join('\n')}\n`);
      process.exit(2);
    }
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      process.stderr.write(`config file not found: ${(error as NodeJS.ErrnoException).path}\n`);
      process.exit(2);
    }
    throw error;
  }
}

/** Closing the store and the rest after the grace period must not take longer than this. */
const SHUTDOWN_MARGIN_MS = 5000;

/**
 * Ctrl-C / SIGTERM: stop accepting, end open streams, let in-flight requests finish within the
 * grace period, close the store, then exit 0. Repeated signals are ignored (a terminal's Ctrl-C
 * reaches npm and us both, and npm forwards it again); a stuck close exits 1 after a bound.
 */
function stopOnSignals(parts: (RunningGateway | { close(): Promise<void> })[], graceSeconds: number): void {
  const limitMs = graceSeconds * 1000 + SHUTDOWN_MARGIN_MS;
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => {
      process.stderr.write(`shutdown did not finish within ${limitMs} ms\n`);
      process.exit(1);
    }, limitMs).unref();
    Promise.all(parts.map((p) => p.close())).then(
      () => {
        process.stdout.write('Stopped cleanly.\n');
        process.exit(0);
      },
      (error: unknown) => {
        process.stderr.write(`error while stopping: ${(error as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
