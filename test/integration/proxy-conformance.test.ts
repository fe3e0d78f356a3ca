import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type McpBackend, startMcpBackend } from '../support/mcp-backend.ts';
import { freePort } from '../support/ports.ts';
import { type ProxyHarness, startProxyHarness } from '../support/proxy-harness.ts';
import { startTokenForwarder } from '../support/token-forwarder.ts';

const run = promisify(execFile);
const BIN = join(process.cwd(), 'node_modules', '.bin');

/** Runs the conformance server suite; returns scenario → passed (no FAILURE check). */
async function conformance(url: string): Promise<Map<string, boolean>> {
  const dir = await mkdtemp(join(tmpdir(), 'conformance-'));
  try {
    await run(process.execPath, [join(BIN, 'conformance'), 'server', '--url', url, '--spec-version', '2025-11-25', '--timeout', '10000', '-o', dir], {
      timeout: 120_000,
    }).catch((error: { code?: number }) => {
      if (typeof error.code !== 'number') throw error; // a non-zero exit only means some scenario failed
    });
    const results = new Map<string, boolean>();
    for (const entry of await readdir(dir)) {
      const scenario = entry.replace(/^server-/, '').replace(/-\d{4}-\d\d-\d\dT[\d-]+Z$/, '');
      const checks = JSON.parse(await readFile(join(dir, entry, 'checks.json'), 'utf8')) as { status: string }[];
      results.set(scenario, checks.length > 0 && checks.every((c) => c.status !== 'FAILURE'));
    }
    return results;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const passing = (results: Map<string, boolean>) => [...results].filter(([, ok]) => ok).map(([name]) => name).sort();

describe('MCP proxy: transparent to conformance tests and the Inspector CLI', () => {
  let backend: McpBackend;
  let gateway: ProxyHarness;
  let forwarder: Server;
  let forwarderUrl: string;
  let token: string;

  before(async () => {
    backend = await startMcpBackend();
    const forwarderPort = await freePort();
    forwarderUrl = `http://127.0.0.1:${forwarderPort}`;
    gateway = await startProxyHarness({
      // The conformance client sends Origin = its target's origin, i.e. the forwarder's.
      allowedOrigins: [forwarderUrl],
      backends: [{ name: 'test', path: '/mcp', url: backend.mcpUrl, sseUrl: backend.sseUrl }],
    });
    token = await gateway.tokenFor('alice', 'test');
    forwarder = await startTokenForwarder(forwarderPort, gateway.url, token);
  });
  after(async () => {
    forwarder.closeAllConnections();
    await new Promise((resolve) => forwarder.close(resolve));
    await gateway.close();
    await backend.close();
  });

  it('passes exactly the same conformance server scenarios directly and through the gateway', { timeout: 240_000 }, async (t) => {
    const direct = await conformance(backend.mcpUrl);
    const proxied = await conformance(`${forwarderUrl}/mcp`);
    assert.deepEqual([...proxied.keys()].sort(), [...direct.keys()].sort(), 'the same scenarios ran');
    assert.deepEqual(passing(proxied), passing(direct));
    t.diagnostic(`${passing(direct).length}/${direct.size} pass both ways: ${passing(direct).join(' ')}`);
    // Not vacuous: the scenarios the fixture implements pass (streaming and rebinding among them).
    for (const scenario of [
      'server-initialize',
      'ping',
      'tools-list',
      'tools-call-simple-text',
      'tools-call-image',
      'tools-call-error',
      'tools-call-with-progress',
      'tools-call-with-logging',
      'dns-rebinding-protection',
    ]) {
      assert.equal(direct.get(scenario), true, `${scenario} passes directly`);
    }
  });

  it('lets MCP Inspector --cli list the tools through the gateway', { timeout: 60_000 }, async () => {
    const { stdout } = await run(
      process.execPath,
      [join(BIN, 'mcp-inspector'), '--cli', `${gateway.url}/mcp`, '--transport', 'http', '--method', 'tools/list', '--header', `Authorization: Bearer ${token}`],
      { timeout: 60_000 },
    );
    const names = (JSON.parse(stdout) as { tools: { name: string }[] }).tools.map((t) => t.name);
    assert.ok(names.includes('echo'), stdout);
    assert.ok(names.includes('progress'));
  });
});
