import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const MAIN = join(import.meta.dirname, 'main.ts');
const KEY = 'main-test-key-secret-value';

/** Runs main.ts as a child process with `env`; resolves with its stderr lines as they arrive. */
function runMain(env: Record<string, string>) {
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const listeners: Array<() => void> = [];
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    for (const listener of listeners) listener();
  });
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return {
    child,
    exited,
    stderr: () => stderr,
    waitFor(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}: ${stderr}`)), timeoutMs);
        const check = () => {
          const match = stderr.match(pattern);
          if (match) {
            clearTimeout(timer);
            resolve(match);
          }
        };
        listeners.push(check);
        check();
      });
    },
  };
}

describe('main.ts', () => {
  it('starts from the environment, serves MCP, never logs the key, and stops cleanly on SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'snippets-main-'));
    const run = runMain({ SNIPPETS_PORT: '0', SNIPPETS_FUNCTION_KEY: KEY, SNIPPETS_DATA_DIR: join(dir, 'snippets') });
    try {
      const [, url] = await run.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+)".*"msg":"snippets MCP server listening"/);
      const client = new Client({ name: 'main-test', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers: { 'x-functions-key': KEY } } }));
      await client.callTool({ name: 'save_snippet', arguments: { snippetname: 'from-main', snippet: 'ok' } });
      await client.close();
      const refused = await fetch(`${url}/mcp`, { method: 'POST', headers: { 'x-functions-key': 'nope' } });
      assert.equal(refused.status, 401);
      await refused.body?.cancel();

      run.child.kill('SIGTERM');
      assert.equal(await run.exited, 0);
      assert.match(run.stderr(), /"msg":"snippets MCP server stopped"/);
      assert.ok(!run.stderr().includes(KEY), 'the key must never be logged');
    } finally {
      run.child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start without SNIPPETS_FUNCTION_KEY', async () => {
    const run = runMain({ SNIPPETS_PORT: '0' });
    assert.equal(await run.exited, 1);
    assert.match(run.stderr(), /SNIPPETS_FUNCTION_KEY is required \(or set SNIPPETS_ALLOW_NO_KEY=1 to serve without a key\)/);
  });

  it('refuses an unknown SNIPPETS_STORAGE', async () => {
    const run = runMain({ SNIPPETS_PORT: '0', SNIPPETS_FUNCTION_KEY: KEY, SNIPPETS_STORAGE: 'cosmos' });
    assert.equal(await run.exited, 1);
    assert.match(run.stderr(), /SNIPPETS_STORAGE must be \\"folder\\" or \\"blob\\", got \\"cosmos\\"/);
  });
});
