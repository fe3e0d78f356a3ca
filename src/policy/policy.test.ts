import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { PolicyInput } from './cel.ts';
import { buildResources } from '../oauth/resources.ts';
import { paramHeadersOf } from './param-headers.ts';
import { compilePolicy } from './policy.ts';

const SIGNING_PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

const BASE = {
  publicUrl: 'https://mcp.example.com',
  secrets: { encryptionKeys: [{ id: 'k1', key: `${'a'.repeat(43)}=` }], cookieKey: 'c'.repeat(40), signingKey: SIGNING_PEM },
  upstream: { entra: { tenantId: '72f988bf-86f1-41af-91ab-2d7cd011db47', clientId: 'app', clientSecret: 's' } },
};

function load(rules: unknown[], scopes = ['mcp:tools'], globalRules?: unknown[]) {
  const backends = [{ name: 'snippets', path: '/mcp', url: 'http://127.0.0.1:7071/mcp', scopes, policy: { rules } }];
  return loadConfig({ yamlText: JSON.stringify({ ...BASE, backends, ...(globalRules ? { policy: { rules: globalRules } } : {}) }), env: {} });
}

function problems(rules: unknown[], scopes?: string[], globalRules?: unknown[]): string[] {
  try {
    load(rules, scopes, globalRules);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

function input(overrides: { roles?: string[]; scopes?: string[]; method?: string; name?: string; arguments?: Record<string, unknown> } = {}): PolicyInput {
  return {
    user: { oid: 'o', tid: 't', sub: 's', name: 'Bob', preferred_username: 'bob', email: 'bob@example.com', roles: overrides.roles ?? [], groups: [], idp: 'i', kind: 'person' },
    client: { client_id: 'c', name: '', kind: 'dcr' },
    scopes: overrides.scopes ?? ['mcp:tools'],
    backend: 'snippets',
    method: overrides.method ?? 'tools/call',
    name: overrides.name ?? 'save_snippet',
    arguments: overrides.arguments ?? { name: 'note' },
    request: { ip: '127.0.0.1', time: new Date(0) },
  };
}

describe('policy config', () => {
  const cases: [string, unknown[], string[]][] = [
    ['a condition that does not compile', [{ name: 'writers', tools: ['save_snippet'], when: 'user.oid ==' }], ['backends.0.policy.rules.0.when: rule "writers": Unexpected token: EOF']],
    ['an unknown field', [{ name: 'writers', tools: ['save_snippet'], when: 'user.department == "x"' }], ['backends.0.policy.rules.0.when: rule "writers": No such key: department']],
    ['an unknown variable', [{ name: 'night', when: 'hour < 6' }], ['backends.0.policy.rules.0.when: rule "night": Unknown variable: hour']],
    ['a condition that is not a bool', [{ name: 'who', when: 'user.email' }], ['backends.0.policy.rules.0.when: rule "who": must be a bool expression, is string']],
    ['an unknown rule key', [{ name: 'writers', role: ['X'] }], ['backends.0.policy.rules.0: unknown key "role"']],
    ['a bad effect', [{ name: 'writers', effect: 'permit' }], ['backends.0.policy.rules.0.effect: Invalid option: expected one of "allow"|"deny"|"step-up"']],
    ['a step-up without scopes', [{ name: 'write-scope', effect: 'step-up', tools: ['save_snippet'] }], ['backends.0.policy.rules.0.scopes: rule "write-scope": a step-up rule names the scopes it requires']],
    [
      'a step-up scope the backend does not have',
      [{ name: 'write-scope', effect: 'step-up', tools: ['save_snippet'], scopes: ['snippets:write'] }],
      ["backends.0.policy.rules.0.scopes: rule \"write-scope\": scope snippets:write is not one of backend snippets's scopes (backends[].scopes)"],
    ],
  ];
  for (const [title, rules, expected] of cases) {
    it(`a rule with ${title} stops the start with one line naming the rule and its key`, () => {
      assert.deepEqual(problems(rules), expected);
    });
  }
  it('a global step-up rule is checked against every backend, and never steps up to the first scope', () => {
    assert.deepEqual(problems([], ['mcp:tools', 'snippets:write'], [{ name: 'base', effect: 'step-up', scopes: ['mcp:tools'] }]), [
      "policy.rules.0.scopes: rule \"base\": scope mcp:tools is backend snippets's first scope, which every call needs; a step-up scope comes after it",
    ]);
  });
});

describe('step-up rules', () => {
  const config = load(
    [
      { name: 'readers', tools: ['hello_mcp', 'get_snippet', 'list_snippets'], roles: ['Snippets.Read', 'Snippets.Write'] },
      { name: 'writers', tools: ['save_snippet', 'delete_snippet'], roles: ['Snippets.Write'] },
      { name: 'no-deletes', effect: 'deny', tools: ['delete_snippet'], when: 'user.name == "Bob"' },
      { name: 'write-scope', effect: 'step-up', tools: ['save_snippet', 'delete_snippet'], scopes: ['snippets:write'] },
      { name: 'audit-scope', effect: 'step-up', tools: ['delete_snippet'], roles: ['Snippets.Write'], scopes: ['snippets:audit'] },
    ],
    ['mcp:tools', 'snippets:write', 'snippets:audit'],
  );
  const policy = compilePolicy(config.backends[0]!.policy!.rules)!;
  const writer = { roles: ['Snippets.Write'] };

  it('an allowed call without the rule\'s scope is refused for that scope only', () => {
    assert.deepEqual(policy.decide(input(writer)), { allowed: false, rule: 'write-scope', missingScopes: ['snippets:write'] });
  });
  it('with the scope the call is allowed by the allow rule', () => {
    assert.deepEqual(policy.decide(input({ ...writer, scopes: ['mcp:tools', 'snippets:write'] })), { allowed: true, rule: 'writers' });
  });
  it('every applicable step-up rule adds its missing scopes; the first names the decision', () => {
    const alice = { ...input({ ...writer, name: 'delete_snippet' }), user: { ...input(writer).user, name: 'Alice' } };
    assert.deepEqual(policy.decide(alice), { allowed: false, rule: 'write-scope', missingScopes: ['snippets:write', 'snippets:audit'] });
  });
  it('a call no rule allows, or a deny rule refuses, is refused as before: no scope is named (hidden names stay hidden)', () => {
    assert.deepEqual(policy.decide(input({ roles: ['Snippets.Read'] })), { allowed: false });
    assert.deepEqual(policy.decide(input({ ...writer, name: 'delete_snippet' })), { allowed: false, rule: 'no-deletes' });
  });
  it('lists show what a step-up would allow', () => {
    assert.deepEqual(policy.decide(input(writer), true), { allowed: true, rule: 'writers' });
  });
  it('step-up scopes are left out of what a client gets without asking (the 401 challenge, /authorize without scope)', () => {
    assert.deepEqual(buildResources('https://mcp.example.com', config.backends, config.policy?.rules).map((r) => [r.scopes, r.defaultScopes]), [
      [
        ['mcp:tools', 'snippets:write', 'snippets:audit'],
        ['mcp:tools'],
      ],
    ]);
  });
});

describe('policy decisions', () => {
  const policy = compilePolicy(
    load([
      { name: 'readers', tools: ['hello_mcp', 'get_snippet', 'list_snippets'], roles: ['Snippets.Read', 'Snippets.Write'] },
      { name: 'writers', tools: ['save_snippet', 'delete_snippet'], roles: ['Snippets.Write'] },
      { name: 'no-secrets', effect: 'deny', tools: ['save_snippet'], when: 'arguments.name.startsWith("secret")' },
      { name: 'admin-scope', methods: ['logging/setLevel'], scopes: ['mcp:admin'] },
    ]).backends[0]!.policy!.rules,
  )!;

  it('a role listed by an allow rule allows its tools', () => {
    assert.deepEqual(policy.decide(input({ roles: ['Snippets.Write'] })), { allowed: true, rule: 'writers' });
  });
  it('what no rule allows is denied', () => {
    assert.deepEqual(policy.decide(input({ roles: ['Snippets.Read'] })), { allowed: false });
    assert.deepEqual(policy.decide(input({ roles: ['Snippets.Write'], name: 'drop_table' })), { allowed: false });
  });
  it('deny wins over allow', () => {
    assert.deepEqual(policy.decide(input({ roles: ['Snippets.Write'], arguments: { name: 'secret-1' } })), { allowed: false, rule: 'no-secrets' });
  });
  it('a condition that fails at run time denies', () => {
    // arguments.name is missing: the deny rule cannot be evaluated, so it denies.
    assert.deepEqual(policy.decide(input({ roles: ['Snippets.Write'], arguments: {} })), { allowed: false, rule: 'no-secrets' });
  });
  it('a deny rule over arguments does not hide the tool from lists', () => {
    assert.deepEqual(policy.decide(input({ roles: ['Snippets.Write'] }), true), { allowed: true, rule: 'writers' });
  });
  it('scopes: all listed scopes are needed', () => {
    assert.equal(policy.decide(input({ method: 'logging/setLevel', name: '' })).allowed, false);
    assert.equal(policy.decide(input({ method: 'logging/setLevel', name: '', scopes: ['mcp:tools', 'mcp:admin'] })).allowed, true);
  });
  it('plumbing and lists are not judged; other methods are', () => {
    assert.equal(policy.governs('initialize'), false);
    assert.equal(policy.governs('tools/list'), false);
    assert.equal(policy.governs('notifications/initialized'), false);
    assert.equal(policy.governs('completion/complete'), true);
  });
  it('a backend without rules has no policy', () => {
    assert.equal(compilePolicy([]), undefined);
  });
});

describe('request.params: the Mcp-Param-* headers (2026-07-28 streamable-http §Custom Headers from Tool Parameters)', () => {
  /** A request as node:http parses it: rawHeaders as sent, headers lower-cased. */
  function request(raw: string[]): IncomingMessage {
    const req = new IncomingMessage(new Socket());
    req.rawHeaders = raw;
    for (let i = 0; i < raw.length; i += 2) req.headers[raw[i]!.toLowerCase()] = raw[i + 1];
    return req;
  }
  const V = ['MCP-Protocol-Version', '2026-07-28'];

  it('maps each header by lower-case name to its value, Base64 sentinels decoded (§Value Encoding)', () => {
    const params = paramHeadersOf(request([...V, 'Mcp-Param-Region', 'us-west1', 'mcp-param-GREETING', '=?base64?SGVsbG8sIOS4lueVjA==?=', 'Mcp-Name', 'x']));
    assert.deepEqual({ ...params }, { region: 'us-west1', greeting: 'Hello, 世界' });
  });
  it('is unknown before 2026-07-28, for a header sent twice, or a malformed Base64 value', () => {
    assert.equal(paramHeadersOf(request(['MCP-Protocol-Version', '2025-11-25', 'Mcp-Param-Region', 'us-west1'])), undefined);
    assert.equal(paramHeadersOf(request(['Mcp-Param-Region', 'us-west1'])), undefined);
    assert.equal(paramHeadersOf(request([...V, 'Mcp-Param-Region', 'us-west1', 'mcp-param-region', 'eu-west'])), undefined);
    assert.equal(paramHeadersOf(request([...V, 'Mcp-Param-Region', '=?base64?a b?='])), undefined);
  });
  it('a parameter named __proto__ is a key like any other', () => {
    const params = paramHeadersOf(request([...V, 'Mcp-Param-__proto__', 'x']))!;
    assert.equal(Object.getPrototypeOf(params), null);
    assert.deepEqual(Object.entries(params), [['__proto__', 'x']]);
  });
});
