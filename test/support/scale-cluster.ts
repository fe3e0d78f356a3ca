import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { Agent, createServer, type IncomingHttpHeaders, type IncomingMessage, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { stringify } from 'yaml';
import { type DevIdp, startDevIdp } from '../../src/idp/dev-idp.ts';
import { DEV_USERS } from './gateway-harness.ts';
import { freePort } from './ports.ts';
import type { HeadlessOAuthProvider } from './sdk-oauth.ts';

/**
 * Real processes for the scale-out and durability tests (issue 5): gateway processes started as
 * an operator does (`cli.ts serve --config FILE`), a durable redis-server that can be stopped and
 * restarted with its data, a round-robin HTTP forwarder standing in for a load balancer, and one
 * dev IdP shared by every replica.
 */

const REPO_ROOT = new URL('../..', import.meta.url).pathname;
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

/** Something the test started and must stop, also on failure. */
export interface Stoppable {
  stop(): Promise<unknown>;
}

/** Stops everything, last started first, ignoring individual failures. */
export async function stopAll(started: Stoppable[]): Promise<void> {
  for (const part of started.splice(0).reverse()) await part.stop().catch(() => {});
}

/** The secrets every replica shares (encryption, cookies, assertion signing). */
export function sharedSecrets() {
  return {
    encryptionKeys: [{ id: 'k1', key: randomBytes(32).toString('base64') }],
    cookieKey: randomBytes(32).toString('base64url'),
    signingKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/**
 * The dev IdP runs in-process per gateway when configured as `upstream.dev`; replicas must share
 * one sign-in, so it runs once here and every gateway is configured with `upstream.oidc` at it.
 */
export async function startSharedDevIdp(publicUrl: string): Promise<{ idp: DevIdp; upstream: Record<string, unknown>; stop(): Promise<void> }> {
  const clientId = 'mcp-entra-gateway';
  const clientSecret = randomBytes(32).toString('base64url');
  const idp = await startDevIdp(
    { host: '127.0.0.1', port: 0, tenantId: '00000000-0000-4000-8000-000000000001', users: DEV_USERS, allowInProduction: false },
    { clientId, clientSecret, redirectUris: [`${publicUrl}/callback`] },
    { env: {} },
  );
  return { idp, upstream: { oidc: { issuer: idp.issuer, clientId, clientSecret } }, stop: () => idp.close() };
}

export function gatewayConfig(options: {
  publicUrl: string;
  port: number;
  /** The admin listener's port (/readyz, /metrics). */
  adminPort: number;
  store: Record<string, unknown>;
  upstream: Record<string, unknown>;
  secrets: ReturnType<typeof sharedSecrets>;
  backend: { url?: string; sseUrl?: string };
  shutdownGraceSeconds?: number;
}): Record<string, unknown> {
  return {
    mode: 'dev',
    publicUrl: options.publicUrl,
    listen: { host: '127.0.0.1', port: options.port },
    admin: { listen: { host: '127.0.0.1', port: options.adminPort } },
    store: options.store,
    secrets: options.secrets,
    upstream: options.upstream,
    backends: [{ name: 'test', path: '/mcp', ...options.backend, credential: { header: 'x-functions-key', value: 'k' } }],
    // All load comes from one loopback address: limits high enough not to trip, still counted in the Store.
    rateLimits: { registrationsPerHour: 100_000, tokenRequestsPerMinute: 100_000, authorizationsPerMinute: 100_000 },
    shutdownGraceSeconds: options.shutdownGraceSeconds ?? 5,
    logLevel: 'warn',
    audit: { sink: 'off' },
  };
}

export interface GatewayProcess extends Stoppable {
  /** Where this process listens (not the public URL when behind the forwarder). */
  url: string;
  /** Its admin listener (/readyz, /metrics). */
  adminUrl: string;
  pid: number;
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** One SQLite gateway with its own shared dev IdP on a free port: its config, to start (and restart). */
export async function singleGatewaySetup(
  started: Stoppable[],
  dbPath: string,
  backend: { url?: string; sseUrl?: string },
  extra: { shutdownGraceSeconds?: number } = {},
) {
  const port = await freePort();
  const publicUrl = `http://localhost:${port}`;
  const idp = await startSharedDevIdp(publicUrl);
  started.push(idp);
  const config = gatewayConfig({ publicUrl, port, adminPort: await freePort(), store: { kind: 'sqlite', path: dbPath }, upstream: idp.upstream, secrets: sharedSecrets(), backend, ...extra });
  return { publicUrl, mcpUrl: `${publicUrl}/mcp`, config };
}

/** `node src/cli.ts serve --config FILE`, resolved once /readyz answers 200 on its admin listener. */
export async function startGatewayProcess(config: Record<string, unknown>, dir: string, name: string): Promise<GatewayProcess> {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(config));
  const port = (config['listen'] as { port: number }).port;
  const adminUrl = `http://127.0.0.1:${(config['admin'] as { listen: { port: number } }).listen.port}`;
  const child = spawn(process.execPath, ['src/cli.ts', 'serve', '--config', file], {
    cwd: REPO_ROOT,
    env: { ...process.env, NODE_ENV: 'test' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const url = `http://127.0.0.1:${port}`;
  const gateway: GatewayProcess = {
    url,
    adminUrl,
    pid: child.pid!,
    child,
    output: () => output,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      process.kill(child.pid!, 'SIGTERM');
      const done = await Promise.race([exited, sleep(STOP_TIMEOUT_MS, 'timeout' as const, { ref: false })]);
      if (done === 'timeout') {
        process.kill(child.pid!, 'SIGKILL');
        await exited;
      }
    },
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gateway ${name} exited with ${child.exitCode}:\n${output}`);
    const status = await fetch(`${adminUrl}/readyz`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) return gateway;
    if (Date.now() > deadline) {
      await gateway.stop();
      throw new Error(`gateway ${name} not ready within ${START_TIMEOUT_MS} ms:\n${output}`);
    }
    await sleep(100);
  }
}

export interface RedisProcess extends Stoppable {
  url: string;
  pid: number;
}

/**
 * redis-server on a loopback port with an append-only file fsynced on every write, so stopping
 * and starting it again (same dir, same port) keeps every key: an outage, not a data loss.
 */
export async function startDurableRedis(dir: string, port: number): Promise<RedisProcess> {
  const child = spawn(
    '/usr/bin/redis-server',
    [
      ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''],
      ...['--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no', '--loglevel', 'warning'],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = once(child, 'exit');
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await exited;
  };
  const deadline = Date.now() + 5000;
  while (!(await answersPing(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server on port ${port} did not start: ${stderr}`);
    }
    await sleep(50);
  }
  return { url: `redis://127.0.0.1:${port}`, pid: child.pid!, stop };
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setTimeout(500);
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => finish(chunk.toString().startsWith('+PONG')));
    socket.on('error', () => finish(false));
    socket.on('timeout', () => finish(false));
  });
}

export interface ForwardedRequest {
  target: number;
  method: string;
  path: string;
}

export interface Forwarder extends Stoppable {
  url: string;
  /** Every request, in arrival order, with the replica it went to. */
  log: ForwardedRequest[];
  /** Picks the replica for the n-th request; default strict alternation. */
  route: (request: IncomingMessage, n: number) => number;
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer'];

function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out = { ...headers };
  for (const name of HOP_BY_HOP) delete out[name];
  return out;
}

/** A load balancer on a loopback port: each HTTP request (not connection) goes to route()'s pick, streamed both ways. */
export async function startForwarder(port: number, targets: string[]): Promise<Forwarder> {
  const agents = targets.map(() => new Agent({ keepAlive: true }));
  let count = 0;
  const server = createServer((req, res) => {
    const target = forwarder.route(req, count++);
    forwarder.log.push({ target, method: req.method ?? '', path: req.url ?? '' });
    const origin = new URL(targets[target]!);
    const upstream = httpRequest(
      { host: origin.hostname, port: origin.port, method: req.method, path: req.url, headers: endToEnd(req.headers), agent: agents[target] },
      (response) => {
        res.writeHead(response.statusCode ?? 502, endToEnd(response.headers));
        res.flushHeaders();
        response.pipe(res);
        response.on('close', () => {
          if (!response.complete) res.destroy();
        });
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end('forwarder: replica unreachable');
      else res.destroy();
    });
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const forwarder: Forwarder = {
    url: `http://localhost:${port}`,
    log: [],
    route: (_request, n) => n % targets.length,
    async stop() {
      server.closeAllConnections();
      for (const agent of agents) agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return forwarder;
}

/** The SDK client signed in headless: 401 → discovery → register → consent → sign-in → token, then connected. */
export async function connectSignedIn(mcpUrl: string, provider: HeadlessOAuthProvider, clientName = 'scale-test'): Promise<Client> {
  const client = new Client({ name: clientName, version: '1.0.0' });
  try {
    await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
    return client;
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
  }
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  await transport.finishAuth(provider.authorizationCode!);
  const signedIn = new Client({ name: clientName, version: '1.0.0' });
  await signedIn.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
  return signedIn;
}

const PROTOCOL_VERSION = '2025-06-18';

/** One raw Streamable HTTP POST with a bearer token, bounded by timeoutMs. */
export function mcpPost(
  mcpUrl: string,
  token: string,
  message: Record<string, unknown>,
  options: { sessionId?: string; timeoutMs?: number } = {},
): Promise<Response> {
  return fetch(mcpUrl, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': PROTOCOL_VERSION,
      ...(options.sessionId ? { 'mcp-session-id': options.sessionId } : {}),
    },
    body: JSON.stringify({ jsonrpc: '2.0', ...message }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
  });
}

/** initialize + notifications/initialized over raw HTTP; the session id. */
export async function openMcpSession(mcpUrl: string, token: string): Promise<string> {
  const init = await mcpPost(mcpUrl, token, {
    id: 0,
    method: 'initialize',
    params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
  });
  if (init.status !== 200) throw new Error(`initialize: ${init.status} ${await init.text()}`);
  await init.text();
  const sessionId = init.headers.get('mcp-session-id');
  if (!sessionId) throw new Error('no mcp-session-id');
  const initialized = await mcpPost(mcpUrl, token, { method: 'notifications/initialized' }, { sessionId });
  await initialized.text();
  return sessionId;
}
