import { connect, createServer, type Socket } from 'node:net';

/**
 * A real loopback socket whose reader never reads: writes back up once the socket buffers fill
 * (a sink that hangs). `close()` tears both ends down.
 */
export async function stalledSocket(): Promise<{ socket: Socket; close(): void }> {
  const stalled: Socket[] = [];
  const server = createServer((peer) => {
    peer.pause();
    stalled.push(peer);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const socket = connect((server.address() as { port: number }).port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  return {
    socket,
    close() {
      socket.destroy();
      for (const peer of stalled) peer.destroy();
      server.close();
    },
  };
}
