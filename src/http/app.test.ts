import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import pino from 'pino';
import { createHttpApp } from './app.ts';

describe('raw routes while the server closes', () => {
  it('a request reaching a raw route after close began gets fastify’s 503 with its real length', async () => {
    const { app, raw } = createHttpApp(pino({ level: 'silent' }));
    raw.add('/raw', ['GET'], (_req, res) => res.end('served'));
    let answer: Response | undefined;
    // Runs after the app's own preClose hook (closing from here on) and before the server stops listening.
    app.addHook('preClose', async () => {
      answer = await fetch(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/raw`);
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    await app.close();
    const body = '{"error":"Service Unavailable","message":"Service Unavailable","statusCode":503}';
    assert.equal(answer?.status, 503);
    assert.equal(answer.headers.get('connection'), 'close');
    assert.equal(answer.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(answer.headers.get('content-length'), String(Buffer.byteLength(body)));
    assert.equal(answer.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(await answer.text(), body);
  });
});
