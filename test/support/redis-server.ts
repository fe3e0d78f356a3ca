import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.ts';

const REDIS_SERVER_BINARY = '/usr/bin/redis-server';
const STARTUP_TIMEOUT_MS = 5000;

export interface RunningRedis {
  url: string;
  port: number;
  /** For tests that freeze the server (SIGSTOP/SIGCONT) to simulate a hung peer. */
  pid: number;
  stop(): Promise<void>;
}

/**
 * Spawns a throwaway redis-server on loopback (no persistence). `port` reuses a known port;
 * `password` turns on requirepass and puts the password in the returned url. `users` (name →
 * password) creates ACL users allowed everything and turns the `default` user off, so every
 * connection must AUTH as one of them (the url carries no credentials).
 */
export async function startRedis(
  options: { port?: number; password?: string; users?: Record<string, string> } = {},
): Promise<RunningRedis> {
  const port = options.port ?? (await freePort());
  const auth = options.password === undefined ? [] : ['--requirepass', options.password];
  if (options.users) {
    auth.push('--user', 'default', 'off');
    for (const [name, password] of Object.entries(options.users)) auth.push('--user', name, 'on', `>${password}`, '~*', '&*', '+@all');
  }
  // Its own working directory: nothing is persisted, but nothing it might write is shared either.
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-redis-'));
  const child = spawn(
    REDIS_SERVER_BINARY,
    [
      ...['--port', String(port), '--bind', '127.0.0.1', '--save', ''],
      ...['--appendonly', 'no', '--daemonize', 'no', '--dir', dir, '--loglevel', 'warning'],
      ...auth,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = once(child, 'exit').finally(() => rmSync(dir, { recursive: true, force: true }));
  try {
    await waitForPong(port, child);
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`redis-server on port ${port} did not start: ${stderr.trim()}`, {
      cause: error,
    });
  }
  return {
    url:
      options.password === undefined
        ? `redis://127.0.0.1:${port}`
        : `redis://:${encodeURIComponent(options.password)}@127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function waitForPong(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`exited with code ${child.exitCode}`);
    if (await answersPing(port)) return;
    await sleep(50);
  }
  throw new Error(`no PONG within ${STARTUP_TIMEOUT_MS} ms`);
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setTimeout(500);
    let reply = '';
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      // With requirepass the server answers -NOAUTH: it is up all the same.
      if (reply.includes('\r\n')) finish(/^(\+PONG|-NOAUTH)/.test(reply));
    });
    socket.on('error', () => finish(false));
    socket.on('timeout', () => finish(false));
  });
}
