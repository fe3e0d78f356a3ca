import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { describe, it } from 'node:test';
import { DEV_USERS, startHarness } from '../support/gateway-harness.ts';
import { freePort } from '../support/ports.ts';

/** Listens on `port` (127.0.0.1), or rejects with the listen error (EADDRINUSE while it is taken). */
function listenOn(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('gateway start', () => {
  it('a start that fails at its last step (admin port taken) releases what it had started: the public listener and the dev IdP', async () => {
    const [port, idpPort] = [await freePort(), await freePort()];
    const taken = await listenOn(0);
    const adminPort = (taken.address() as { port: number }).port;
    try {
      await assert.rejects(
        startHarness({
          port,
          upstream: { dev: { port: idpPort, users: DEV_USERS } },
          config: { admin: { listen: { host: '127.0.0.1', port: adminPort } } },
        }),
        { code: 'EADDRINUSE' },
      );
    } finally {
      await close(taken);
    }
    // Both ports are free again (a listener left open would also keep this test process alive).
    for (const free of [port, idpPort]) await close(await listenOn(free));
  });
});
