import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { type ConformanceFixture, startConformanceFixture } from '../support/conformance-fixture.ts';
import { type ConformanceRequirements, passingScenarios, runConformance, type ScenarioResult } from '../support/conformance.ts';
import { freePort } from '../support/ports.ts';
import { type ProxyHarness, startProxyHarness } from '../support/proxy-harness.ts';
import { startTokenForwarder } from '../support/token-forwarder.ts';

async function requiredServerScenarios(requirements: ConformanceRequirements): Promise<string[]> {
  const file = join(process.cwd(), 'node_modules', '@modelcontextprotocol', 'conformance', 'requirements', `${requirements}.yaml`);
  return (parse(await readFile(file, 'utf8')) as { server: string[] }).server;
}

describe('conformance suite against the v2 SDK fixture, directly and through the gateway', () => {
  let fixture: ConformanceFixture;
  let gateway: ProxyHarness;
  let forwarder: Server;
  let forwarderUrl: string;
  /** Each requirement set's direct run, compared with its run through the gateway. */
  const direct = new Map<ConformanceRequirements, Map<string, ScenarioResult>>();

  before(async () => {
    fixture = await startConformanceFixture();
    const forwarderPort = await freePort();
    forwarderUrl = `http://127.0.0.1:${forwarderPort}`;
    gateway = await startProxyHarness({
      // The conformance client sends Origin = its target's origin, i.e. the forwarder's.
      allowedOrigins: [forwarderUrl],
      backends: [{ name: 'fixture', path: '/mcp', url: fixture.mcpUrl }],
    });
    forwarder = await startTokenForwarder(forwarderPort, gateway.url, await gateway.tokenFor('alice', 'fixture'));
  });
  after(async () => {
    forwarder.closeAllConnections();
    await new Promise((resolve) => forwarder.close(resolve));
    await gateway.close();
    await fixture.close();
  });

  for (const requirements of ['2026-07-28', '2025-11-25'] as const) {
    it(`passes every required ${requirements} scenario`, { timeout: 300_000 }, async (t) => {
      const results = await runConformance(fixture.mcpUrl, requirements);
      direct.set(requirements, results);
      const required = await requiredServerScenarios(requirements);
      for (const scenario of required) {
        const result = results.get(scenario);
        assert.ok(result, `${scenario} ran`);
        assert.equal(result.passed, true, `${scenario}: ${result.failures.join('; ')}`);
        assert.deepEqual(result.warnings, [], `${scenario} meets its SHOULDs`);
      }
      t.diagnostic(`${passingScenarios(results).length}/${results.size} scenarios pass: ${passingScenarios(results).join(' ')}`);
    });

    it(`passes (and warns on) exactly the same ${requirements} scenarios through the gateway as directly`, { timeout: 300_000 }, async (t) => {
      const directly = direct.get(requirements);
      assert.ok(directly, 'the direct run ran first');
      const proxied = await runConformance(`${forwarderUrl}/mcp`, requirements);
      assert.deepEqual([...proxied.keys()].sort(), [...directly.keys()].sort(), 'the same scenarios ran');
      const outcome = (result: ScenarioResult) => `${result.passed ? 'passed' : 'failed'}${result.warnings.length > 0 ? ` warning ${result.warnings.join(' ')}` : ''}`;
      const differing = [...directly.keys()]
        .filter((scenario) => outcome(proxied.get(scenario)!) !== outcome(directly.get(scenario)!))
        .map((scenario) => `${scenario}: directly ${outcome(directly.get(scenario)!)}, through the gateway ${outcome(proxied.get(scenario)!)} ${proxied.get(scenario)!.failures.join('; ')}`);
      assert.deepEqual(differing, []);
      t.diagnostic(`${passingScenarios(proxied).length}/${proxied.size} pass both ways`);
    });
  }
});
