import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { DEV_USERS } from '../support/gateway-harness.ts';
import { freePort } from '../support/ports.ts';
import { sharedSecrets } from '../support/scale-cluster.ts';
import { selfSignedCertificate } from '../support/tls.ts';

/** Azure Cache for Redis shape: rediss:// with a password; here with a private CA from `store.tls.ca`. */
describe('Redis store over TLS with a password (store.tls)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-redis-tls-'));
  const { key, cert } = selfSignedCertificate();
  let redis: ChildProcess;
  let port: number;
  before(async () => {
    writeFileSync(join(dir, 'key.pem'), key);
    writeFileSync(join(dir, 'cert.pem'), cert);
    port = await freePort();
    redis = spawn(
      '/usr/bin/redis-server',
      [
        ...['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--tls-auth-clients', 'no'],
        ...['--tls-cert-file', join(dir, 'cert.pem'), '--tls-key-file', join(dir, 'key.pem'), '--requirepass', 's3cret/+pw'],
        ...['--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'],
      ],
      { stdio: 'ignore' },
    );
    // Up when the TLS port accepts connections (bounded).
    for (let i = 0; i < 100 && !(await accepts(port)); i++) await sleep(50);
  });
  after(async () => {
    if (redis.exitCode === null) {
      redis.kill('SIGKILL');
      await once(redis, 'exit');
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const start = async (store: Record<string, unknown>): Promise<RunningGateway> => {
    const gatewayPort = await freePort();
    const yamlText = JSON.stringify({
      mode: 'dev',
      publicUrl: `http://localhost:${gatewayPort}`,
      listen: { host: '127.0.0.1', port: gatewayPort },
      admin: { listen: { host: '127.0.0.1', port: 0 } },
      store,
      secrets: sharedSecrets(),
      upstream: { dev: { port: 0, users: DEV_USERS } },
      backends: [{ name: 'test', path: '/mcp', url: 'http://127.0.0.1:9/mcp' }],
      logLevel: 'silent',
    });
    return startGateway(loadConfig({ yamlText, env: {} }), { env: {}, logger: pino({ level: 'silent' }) });
  };
  const url = () => `rediss://:${encodeURIComponent('s3cret/+pw')}@localhost:${port}`;

  it('connects with the configured CA and password; ready, and registrations land in Redis', async () => {
    const gateway = await start({ kind: 'redis', url: url(), keyPrefix: 'tls:', tls: { ca: cert } });
    try {
      assert.equal((await fetch(`${gateway.adminUrl}/readyz`)).status, 200);
      const registered = await fetch(`${gateway.url}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:53682/callback'], token_endpoint_auth_method: 'none' }),
      });
      assert.equal(registered.status, 201);
      const { client_id: clientId } = (await registered.json()) as { client_id: string };
      assert.ok(await gateway.ctx.store.get(`client:${clientId}`));
    } finally {
      await gateway.close();
    }
  });

  it('fails at start without the CA (certificate not trusted) and with a wrong password', async () => {
    await assert.rejects(start({ kind: 'redis', url: url() }), /Redis unavailable/);
    await assert.rejects(
      start({ kind: 'redis', url: `rediss://:wrong@localhost:${port}`, tls: { ca: cert } }),
      /WRONGPASS|invalid username-password/,
    );
  });
});

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('connect', () => resolve(true)).on('error', () => resolve(false));
    socket.setTimeout(500, () => resolve(false));
    socket.unref();
    socket.on('close', () => resolve(false));
    setTimeout(() => socket.destroy(), 600).unref();
  });
}
