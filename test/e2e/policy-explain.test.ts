import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { docBlocks } from '../support/doc-blocks.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

/** `mcp-entra-gateway policy explain` on the README's own policy examples, as an operator checks rules before deploying them. */
describe('policy explain', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-explain-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const policyBlocks = docBlocks().filter((b) => b.file === 'README.md' && b.heading === 'Who may call which tool' && b.lang === 'yaml');
  const devPolicy = join(dir, 'dev-policy.yaml');
  const entraPolicy = join(dir, 'entra-policy.yaml');
  const stepUpPolicy = join(dir, 'step-up-policy.yaml');
  writeFileSync(devPolicy, policyBlocks[0]?.text ?? '');
  writeFileSync(entraPolicy, policyBlocks[1]?.text ?? '');
  writeFileSync(stepUpPolicy, policyBlocks[2]?.text ?? '');
  const explain = (config: string, ...args: string[]) =>
    spawnSync(process.execPath, [join(ROOT, 'src/cli.ts'), 'policy', 'explain', '--config', config, ...args], { encoding: 'utf8', timeout: 30_000 });

  it('finds the README policy examples', () => assert.equal(policyBlocks.length, 3));

  it('a reader may not save: denied, no rule allows it (exit 1)', () => {
    const result = explain(devPolicy, '--tool', 'save_snippet', '--user', 'bob', '--roles', 'Snippets.Read');
    assert.equal(result.status, 1, result.stderr);
    assert.equal(
      result.stdout,
      'tools/call save_snippet on snippets by bob (roles: Snippets.Read; groups: none; scopes: none):\ndenied: no rule allows it (once a backend has rules, what none allows is denied)\n',
    );
  });

  it('a writer may save: allowed by rule "writers" (exit 0)', () => {
    const result = explain(devPolicy, '--tool', 'save_snippet', '--user', 'alice', '--roles', 'Snippets.Write');
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.split('\n')[1], 'allowed by rule "writers"');
  });

  it('an allowed save names the quota it is counted by; a read is under none', () => {
    const save = explain(devPolicy, '--tool', 'save_snippet', '--user', 'alice', '--roles', 'Snippets.Write');
    assert.deepEqual(save.stdout.split('\n').slice(1), ['allowed by rule "writers"', 'counted by quota "saves": at most 30 calls per user in 60 s (sliding window)', '']);
    const read = explain(devPolicy, '--tool', 'get_snippet', '--user', 'alice', '--roles', 'Snippets.Write');
    assert.deepEqual(read.stdout.split('\n').slice(1), ['allowed by rule "readers"', '']);
  });

  it('the Entra example: a group member may delete by day, not after 20:00 in Berlin', () => {
    const group = '6f1c2a7e-93b4-4d0e-8a51-2c9f0b7d4e11';
    const day = explain(entraPolicy, '--tool', 'delete_snippet', '--groups', group, '--time', '2026-12-04T10:00:00+01:00');
    assert.equal(day.stdout.split('\n')[1], 'allowed by rule "writers"');
    const night = explain(entraPolicy, '--tool', 'delete_snippet', '--groups', group, '--time', '2026-12-04T21:00:00+01:00');
    assert.equal(night.status, 1);
    assert.equal(night.stdout.split('\n')[1], 'denied by rule "no-deletes-after-hours"');
  });

  it('the step-up example: a writer without snippets:write is asked for it (exit 1); with it, allowed', () => {
    const without = explain(stepUpPolicy, '--tool', 'save_snippet', '--roles', 'Snippets.Write', '--scopes', 'mcp:tools');
    assert.equal(without.status, 1, without.stderr);
    assert.equal(
      without.stdout.split('\n')[1],
      'needs scope snippets:write (step-up, rule "write-scope"): a token without it gets 403 insufficient_scope and the client asks the user for it',
    );
    const stepped = explain(stepUpPolicy, '--tool', 'save_snippet', '--roles', 'Snippets.Write', '--scopes', 'mcp:tools snippets:write');
    assert.equal(stepped.status, 0, stepped.stderr);
    assert.equal(stepped.stdout.split('\n')[1], 'allowed by rule "writers"');
  });

  it('--param gives request.params, the Mcp-Param-* headers of a 2026-07-28 call (names case-insensitive)', () => {
    const regional = join(dir, 'regional.yaml');
    writeFileSync(regional, 'backends:\n  - name: b\n    policy:\n      rules:\n        - { name: eu-only, tools: [query], when: \'request.params.region == "eu-west"\' }\n');
    const eu = explain(regional, '--tool', 'query', '--param', 'Region=eu-west');
    assert.equal(eu.status, 0, eu.stderr);
    assert.equal(eu.stdout.split('\n')[1], 'allowed by rule "eu-only"');
    const none = explain(regional, '--tool', 'query');
    assert.equal(none.status, 1, none.stderr);
    assert.equal(none.stdout.split('\n')[1], 'denied: no rule allows it (once a backend has rules, what none allows is denied)');
    const bad = explain(regional, '--tool', 'query', '--param', 'region');
    assert.equal(bad.status, 1);
    assert.equal(bad.stderr, 'mcp-entra-gateway: --param region: expected NAME=VALUE\n');
  });

  it('lists are never refused (they are filtered), and a rule that does not compile is named by its key', () => {
    assert.equal(explain(devPolicy, '--method', 'tools/list').stdout.split('\n')[1], 'allowed: tools/list is never refused by the policy (lists are filtered instead)');
    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, 'backends:\n  - name: b\n    policy:\n      rules:\n        - { name: oops, tools: [x], when: "user.department == 1" }\n');
    const result = explain(broken, '--tool', 'x');
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^mcp-entra-gateway: backends\.0\.policy\.rules\.0\.when: rule "oops": .*department/);
  });
});
