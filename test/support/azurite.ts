import { type ChildProcess, spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from './ports.ts';

export interface RunningAzurite {
  connectionString: string;
  /** http://127.0.0.1:<port>/devstoreaccount1 */
  blobEndpoint: string;
  stop(): Promise<void>;
}

/** Azurite's well-known development account (public, documented by Microsoft). */
const ACCOUNT_NAME = 'devstoreaccount1';
const ACCOUNT_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const STARTUP_TIMEOUT_MS = 20_000;

/** Starts Azurite's blob service on a free loopback port with a temporary location. */
export async function startAzurite(): Promise<RunningAzurite> {
  const port = await freePort();
  const location = await mkdtemp(join(tmpdir(), 'azurite-'));
  // node_modules/.bin/azurite-blob is a symlink to a JS file; run it with this Node, not whatever `node` is on PATH.
  const entry = realpathSync(resolve(import.meta.dirname, '../../node_modules/.bin/azurite-blob'));
  const child = spawn(
    process.execPath,
    [entry, '--blobHost', '127.0.0.1', '--blobPort', String(port), '--location', location, '--silent', '--skipApiVersionCheck', '--loose'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(location, { recursive: true, force: true });
  };

  try {
    await waitForPort(port, child, () => stderr);
  } catch (error) {
    await stop();
    throw error;
  }
  const blobEndpoint = `http://127.0.0.1:${port}/${ACCOUNT_NAME}`;
  return {
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT_NAME};AccountKey=${ACCOUNT_KEY};BlobEndpoint=${blobEndpoint};`,
    blobEndpoint,
    stop,
  };
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`azurite exited (${child.exitCode ?? child.signalCode}) before listening: ${stderr()}`);
    }
    if (await canConnect(port)) return;
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error(`azurite did not listen on 127.0.0.1:${port} within ${STARTUP_TIMEOUT_MS} ms: ${stderr()}`);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}
