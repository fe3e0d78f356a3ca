import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { PolicyQuotaConfig } from '../config/schema.ts';
import type { AccessTokenRecord } from '../ports/records.ts';
import { SqliteStore } from '../store/sqlite.ts';
import type { PolicyInput } from './cel.ts';
import { createEnforcer } from './enforce.ts';
import { createQuotas, judgeWindow, type WindowCounts } from './quota.ts';

const SIGNING_PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

const BASE = {
  publicUrl: 'https://mcp.example.com',
  secrets: { encryptionKeys: [{ id: 'k1', key: `${'a'.repeat(43)}=` }], cookieKey: 'c'.repeat(40), signingKey: SIGNING_PEM },
  upstream: { entra: { tenantId: '72f988bf-86f1-41af-91ab-2d7cd011db47', clientId: 'app', clientSecret: 's' } },
};

function problems(quotas: unknown[]): string[] {
  try {
    loadConfig({ yamlText: JSON.stringify({ ...BASE, backends: [{ name: 'snippets', path: '/mcp', url: 'http://127.0.0.1:7071/mcp', policy: { quotas } }] }), env: {} });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('quota config', () => {
  const saves = { name: 'saves', tools: ['save_snippet'], limit: 30, per: 'user' };
  const cases: [string, unknown[], string[]][] = [
    ['a condition that does not compile', [{ ...saves, when: 'user.department == "x"' }], ['backends.0.policy.quotas.0.when: quota "saves": No such key: department']],
    ['an unknown key', [{ ...saves, window: 'sliding', kind: 'fixed' }], ['backends.0.policy.quotas.0: unknown key "kind"']],
    ['an unknown counting', [{ ...saves, per: 'tenant' }], ['backends.0.policy.quotas.0.per: Invalid option: expected one of "user"|"client"|"user+tool"']],
    ['no limit', [{ ...saves, limit: 0 }], ['backends.0.policy.quotas.0.limit: Too small: expected number to be >0']],
    ['a name used twice', [saves, { ...saves, per: 'client' }], ['backends.0.policy.quotas.1.name: quota "saves": duplicate name']],
  ];
  for (const [title, quotas, expected] of cases) {
    it(`a quota with ${title} stops the start with one line naming the quota and its key`, () => {
      assert.deepEqual(problems(quotas), expected);
    });
  }
  it('the defaults: a 60 s sliding window', () => {
    assert.deepEqual(problems([saves]), []);
  });
});

describe('judgeWindow: over the limit, first refusal, and the exact wait', () => {
  const base = { limit: 30, windowSeconds: 60, previous: 0 } as const;
  const cases: [string, WindowCounts, { over: boolean; first: boolean; retryAfterSeconds?: number }][] = [
    ['fixed: the 30th call passes', { ...base, kind: 'fixed', now: 120, current: 30 }, { over: false, first: false }],
    ['fixed: the 31st is the first refused, until the window ends', { ...base, kind: 'fixed', now: 120, current: 31 }, { over: true, first: true, retryAfterSeconds: 60 }],
    ['fixed: later refusals are not the first', { ...base, kind: 'fixed', now: 150.5, current: 32 }, { over: true, first: false, retryAfterSeconds: 30 }],
    // 31 in this window: the next call passes when 31·(1 − s) + 1 ≤ 30 in the next one, s ≥ 2/31 (3.9 s).
    ['sliding: the 31st at a window start waits for the next window and some', { ...base, kind: 'sliding', now: 120, current: 31 }, { over: true, first: true, retryAfterSeconds: 64 }],
    // Half-way: 40 · 0.5 + 10 = 30 passes; an 11th is over, and a 12th passes once 40 · (1 − f) + 12 ≤ 30, f = 0.55 (3 s on).
    ['sliding: the previous window weighs by its overlap', { ...base, kind: 'sliding', now: 150, current: 10, previous: 40 }, { over: false, first: false }],
    ['sliding: over by the previous window, waits until enough of it slid out', { ...base, kind: 'sliding', now: 150, current: 11, previous: 40 }, { over: true, first: true, retryAfterSeconds: 3 }],
    ['sliding: a limit of 1 waits out a whole window after this one', { ...base, kind: 'sliding', limit: 1, now: 120, current: 2 }, { over: true, first: true, retryAfterSeconds: 120 }],
  ];
  for (const [title, counts, expected] of cases) {
    it(title, () => {
      const verdict = judgeWindow(counts);
      assert.deepEqual({ over: verdict.over, first: verdict.first }, { over: expected.over, first: expected.first });
      if (expected.retryAfterSeconds !== undefined) assert.equal(verdict.retryAfterSeconds, expected.retryAfterSeconds);
    });
  }
});

describe('createQuotas on a store: counted per user, client or user and tool, over a moving clock', () => {
  const record = (userKey: string, clientId = 'client-1') => ({ userKey, clientId, user: { issuer: 'i', subject: userKey } }) as AccessTokenRecord;
  const input = (name: string) => ({ method: 'tools/call', name, backend: 'snippets', request: { ip: '127.0.0.1' } }) as PolicyInput;
  const setup = (quota: Partial<PolicyQuotaConfig>) => {
    const now = { seconds: 1_800_000_000 - (1_800_000_000 % 60) };
    const clock = { nowSeconds: () => now.seconds, nowMs: () => now.seconds * 1000 };
    const store = SqliteStore.open({ path: ':memory:', clock });
    const config = { name: 'q', limit: 3, per: 'user', windowSeconds: 60, window: 'fixed', ...quota } as PolicyQuotaConfig;
    const quotas = createQuotas([{ scope: 'snippets', quota: config }], { store, clock })!;
    return { now, store, quotas };
  };
  const charge = async (quotas: ReturnType<typeof setup>['quotas'], times: number, name: string, who: AccessTokenRecord) => {
    const results = [];
    for (let i = 0; i < times; i++) results.push((await quotas.charge(input(name), who))?.retryAfterSeconds);
    return results;
  };

  it('per user: a user\'s calls to every tool share one count; another user has their own; a new fixed window starts afresh', async () => {
    const { now, store, quotas } = setup({ per: 'user' });
    now.seconds += 45;
    assert.deepEqual(await charge(quotas, 3, 'a', record('u1')), [undefined, undefined, undefined]);
    assert.deepEqual(await charge(quotas, 1, 'b', record('u1')), [15]);
    assert.deepEqual(await charge(quotas, 1, 'a', record('u2')), [undefined]);
    now.seconds += 15;
    assert.deepEqual(await charge(quotas, 1, 'a', record('u1')), [undefined]);
    await store.close();
  });

  it('per user+tool: each tool counts apart', async () => {
    const { store, quotas } = setup({ per: 'user+tool', limit: 1 });
    assert.deepEqual(await charge(quotas, 2, 'a', record('u1')), [undefined, 60]);
    assert.deepEqual(await charge(quotas, 1, 'b', record('u1')), [undefined]);
    await store.close();
  });

  it('per client: every user of one client shares the count', async () => {
    const { store, quotas } = setup({ per: 'client', limit: 1 });
    assert.deepEqual(await charge(quotas, 1, 'a', record('u1', 'c1')), [undefined]);
    assert.deepEqual(await charge(quotas, 1, 'a', record('u2', 'c1')), [60]);
    assert.deepEqual(await charge(quotas, 1, 'a', record('u1', 'c2')), [undefined]);
    await store.close();
  });

  it('sliding: refused at the 4th call; a call a second early is refused (and counts); then passes exactly when told', async () => {
    const { now, store, quotas } = setup({ window: 'sliding' });
    const u1 = record('u1');
    // 4 in this window: the next call passes when 4·(1 − s) + 1 ≤ 3 in the next one, s = 0.5.
    assert.deepEqual(await charge(quotas, 4, 'a', u1), [undefined, undefined, undefined, 90]);
    now.seconds += 89;
    // That call counts: the next passes when 4·(1 − f) + 2 ≤ 3, f = 0.75 (16 s on).
    assert.deepEqual(await charge(quotas, 1, 'a', u1), [16]);
    now.seconds += 16;
    assert.deepEqual(await charge(quotas, 1, 'a', u1), [undefined]);
    await store.close();
  });

  it('a quota whose tools do not name the call does not count it (no Store work, no promise)', async () => {
    const { store, quotas } = setup({ tools: ['save_*'], limit: 1 });
    assert.equal(quotas.charge(input('get_snippet'), record('u1')), undefined);
    assert.deepEqual(await charge(quotas, 3, 'get_snippet', record('u1')), [undefined, undefined, undefined]);
    assert.deepEqual(await charge(quotas, 2, 'save_snippet', record('u1')), [undefined, 60]);
    await store.close();
  });
});

describe('screening with quotas: a promise only for a call a quota applies to', () => {
  const clock = { nowSeconds: () => 1_800_000_000, nowMs: () => 1_800_000_000_000 };
  const record = { userKey: 'u1', clientId: 'client-1', scopes: ['mcp:tools'], user: { issuer: 'i', subject: 'u1', roles: [], groups: [] } } as unknown as AccessTokenRecord;
  const req = { socket: { remoteAddress: '127.0.0.1' } } as IncomingMessage;
  const body = (name: string) => Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: {} } }));

  it('uncounted calls, plumbing and lists are screened synchronously; a counted one waits for the Store and is refused over the limit', async () => {
    const store = SqliteStore.open({ path: ':memory:', clock });
    const quota = { name: 'saves', tools: ['save_snippet'], limit: 1, per: 'user', windowSeconds: 60, window: 'fixed' } as PolicyQuotaConfig;
    const enforcer = createEnforcer([], { backend: 'snippets', clock, quotas: [{ scope: 'snippets', quota }], store })!;
    const subject = enforcer.subject(req, record);
    assert.ok(!(subject instanceof Promise), 'no lookup: the subject is built without a promise');
    assert.deepEqual(enforcer.screen(body('get_snippet'), subject), { refusal: undefined, asksForLists: false });
    const list = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }));
    assert.deepEqual(enforcer.screen(list, subject), { refusal: undefined, asksForLists: false }, 'quotas alone filter no list');
    const first = enforcer.screen(body('save_snippet'), subject);
    assert.ok(first instanceof Promise);
    assert.deepEqual(await first, { refusal: undefined, asksForLists: false });
    assert.deepEqual(await enforcer.screen(body('save_snippet'), subject), {
      refusal: {
        jsonrpc: '2.0',
        id: 1,
        error: {
          code: -32005,
          message: 'Rate limit exceeded: quota "saves" allows 1 calls per user in 60 s; retry in 60 s',
          data: { quota: 'saves', limit: 1, per: 'user', windowSeconds: 60, retryAfterSeconds: 60 },
        },
      },
      retryAfterSeconds: 60,
      asksForLists: false,
    });
    await store.close();
  });
});
