import { connect, createServer } from 'node:net';
import { startMcpBackend } from './mcp-backend.ts';

/**
 * The test MCP backend (mcp-backend.ts) as its own process on a fixed port, so a test can
 * `kill -9` it and start it again where the gateway expects it:
 *   node test/support/mcp-backend-process.ts PORT
 * The backend listens on a port of its own; PORT relays bytes to it, in the same process, so a
 * kill drops every connection at once, as a crashed backend does. Prints "ready" when listening.
 */
const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) throw new Error('usage: mcp-backend-process.ts PORT');
const backend = await startMcpBackend();
const backendPort = Number(new URL(backend.url).port);
const relay = createServer((socket) => {
  const upstream = connect(backendPort, '127.0.0.1');
  const done = () => {
    socket.destroy();
    upstream.destroy();
  };
  socket.on('error', done).on('close', done);
  upstream.on('error', done).on('close', done);
  socket.pipe(upstream).pipe(socket);
});
relay.listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
