import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { chromium } from 'playwright-core';
import { createFolderStorage } from '../../servers/snippets/folder-storage.ts';
import { type RunningSnippetsServer, startSnippetsServer } from '../../servers/snippets/http.ts';
import { type Harness, startHarness } from '../support/gateway-harness.ts';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../support/chromium.ts';
import { freePort } from '../support/ports.ts';

const PAGE = readFileSync(new URL('./fixtures/mcp-page-client.html', import.meta.url), 'utf8');

/**
 * A browser-based MCP client served from its own origin, with no server-side helper: everything
 * it does against the gateway is a cross-origin fetch (or the user's navigation to sign in).
 */
describe('browser: an MCP client page on another origin signs in and lists tools with fetch alone', () => {
  let dir: string;
  let pageServer: Server;
  let pageOrigin: string;
  const pageRequests: string[] = [];
  let snippets: RunningSnippetsServer;
  let gateway: Harness;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cross-origin-'));
    pageServer = createServer((req, res) => {
      pageRequests.push(`${req.method} ${new URL(req.url ?? '/', 'http://page').pathname}`);
      if (req.method === 'GET' && req.url?.startsWith('/app.html')) return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
    pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;
    const port = await freePort();
    snippets = await startSnippetsServer({
      storage: await createFolderStorage(dir),
      port: 0,
      functionKey: 'backend-key',
      identityJwksUrl: `http://localhost:${port}/.well-known/jwks.json`,
      identityAudience: `http://localhost:${port}/mcp`,
      logger: pino({ level: 'silent' }),
    });
    gateway = await startHarness({
      port,
      config: { allowedOrigins: [pageOrigin] },
      backends: [{ name: 'snippets', path: '/mcp', url: snippets.mcpUrl, credential: { header: 'x-functions-key', value: 'backend-key' } }],
    });
  });
  after(async () => {
    await gateway?.close();
    await snippets?.close();
    await new Promise<void>((resolve) => pageServer.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('discovers, registers, signs in, redeems the code and lists the snippets tools', { timeout: 60_000 }, async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
    try {
      const page = await browser.newPage();
      await page.goto(`${pageOrigin}/app.html?mcp=${encodeURIComponent(gateway.mcpUrl)}`);
      // The user's part: consent, sign-in, consent as the signed-in user.
      await page.waitForURL((url) => url.pathname === '/authorize');
      await Promise.all([page.waitForURL((url) => url.pathname.includes('/interaction/')), page.getByRole('button', { name: 'Allow' }).click()]);
      await page.fill('input[name="login"]', 'alice');
      await page.fill('input[name="password"]', 'alice-password');
      await Promise.all([page.waitForURL((url) => url.pathname === '/callback'), page.getByRole('button', { name: 'Sign in' }).click()]);
      await Promise.all([page.waitForURL((url) => url.origin === pageOrigin), page.getByRole('button', { name: 'Allow' }).click()]);
      await page.waitForFunction("/tools: |error: /.test(document.getElementById('out').textContent)", undefined, { timeout: 20_000 });
      assert.deepEqual((await page.locator('#out').textContent())?.trim().split('\n'), [
        'token: 200',
        'initialize: snippets',
        'tools: hello_mcp,save_snippet,get_snippet,list_snippets,delete_snippet',
      ]);
      assert.deepEqual(
        pageRequests.filter((r) => r !== 'GET /favicon.ico'),
        ['GET /app.html', 'GET /app.html'],
        'the page origin served the page only (no server-side helper)',
      );
    } finally {
      await browser.close();
    }
  });
});
