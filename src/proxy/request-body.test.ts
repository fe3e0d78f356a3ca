import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { arrivedWhole } from './relay.ts';

const BODY = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'ping', arguments: {} } });
const HEAD = `POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${BODY.length}\r\nconnection: close\r\n\r\n`;

/**
 * A real node:http server whose handler waits one microtask and then tries arrivedWhole; the
 * client sends the head and body in one write, or the body a moment after the head.
 */
async function tryArrived(split: boolean): Promise<{ taken: string | undefined; ended: boolean }> {
  let seen: Promise<{ taken: string | undefined; ended: boolean }> | undefined;
  const server = createServer(async (req: IncomingMessage, res) => {
    await undefined;
    const taken = arrivedWhole(req, 1024, Number(req.headers['content-length']))?.toString('utf8');
    seen = (async () => {
      // Read by events when it was not all there; either way the request ends.
      let rest = '';
      if (taken === undefined) for await (const chunk of req) rest += chunk;
      else await once(req, 'end');
      res.end();
      return { taken, ended: taken !== undefined || rest === BODY };
    })();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  await once(socket, 'connect');
  if (split) {
    socket.write(HEAD);
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.write(BODY);
  } else {
    socket.write(HEAD + BODY);
  }
  socket.resume();
  await once(socket, 'close');
  server.close();
  return seen!;
}

describe('arrivedWhole: a small request body of known length', () => {
  it('sent with its head, is all there one microtask into the handler and taken at once; the request still ends', async () => {
    assert.deepEqual(await tryArrived(false), { taken: BODY, ended: true });
  });

  it('sent after its head, is not taken (left to be read by events)', async () => {
    assert.deepEqual(await tryArrived(true), { taken: undefined, ended: true });
  });
});
