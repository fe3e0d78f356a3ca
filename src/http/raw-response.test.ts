import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { onResponseClose, RawResponse, watchRawResponse } from './raw-response.ts';

async function serve(handler: (res: ServerResponse) => void): Promise<{ server: Server; port: number }> {
  const server = createServer({ ServerResponse: RawResponse as typeof ServerResponse }, (_req, res) => handler(res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

describe('close hooks of a raw response', () => {
  it('every hook runs once, in the order set, before the observer sees the response', async () => {
    const calls: string[] = [];
    let observed!: () => void;
    const done = new Promise<void>((resolve) => {
      observed = resolve;
    });
    const { server, port } = await serve((res) => {
      watchRawResponse(res as RawResponse, '/mcp', (route, method, status) => {
        calls.push(`observer ${route} ${method} ${status}`);
        observed();
      });
      for (const name of ['request record', 'operation records', 'backend abort']) onResponseClose(res, () => calls.push(name));
      res.writeHead(202).end();
    });
    try {
      const answered = await fetch(`http://127.0.0.1:${port}/mcp`, { method: 'POST', body: '{}' });
      assert.equal(answered.status, 202);
      await done;
      assert.deepEqual(calls, ['request record', 'operation records', 'backend abort', 'observer /mcp POST 202']);
    } finally {
      server.close();
    }
  });

  it('a hook set after the client left still runs (the handler awaited while it went)', { timeout: 10_000 }, async () => {
    let hookRan!: (how: string) => void;
    const ran = new Promise<string>((resolve) => {
      hookRan = resolve;
    });
    const { server, port } = await serve((res) => {
      watchRawResponse(res as RawResponse, '/mcp', undefined);
      res.once('close', () => setImmediate(() => onResponseClose(res, () => hookRan(`ran, finished ${res.writableFinished}`))));
    });
    try {
      const req = request({ port, host: '127.0.0.1', method: 'POST', path: '/mcp', headers: { 'content-length': '10' } });
      req.on('error', () => {});
      req.write('{"a":');
      setTimeout(() => req.destroy(), 50);
      assert.equal(await ran, 'ran, finished false');
    } finally {
      server.close();
    }
  });
});
