import type { IncomingMessage } from 'node:http';
import { policySchema } from '../../src/config/schema.ts';
import { DEV_POLICY_QUOTAS, DEV_POLICY_RULES } from '../../src/dev.ts';
import { userKeyOf } from '../../src/oauth/grants.ts';
import { createEnforcer, type Enforcer } from '../../src/policy/enforce.ts';
import { systemClock } from '../../src/ports/clock.ts';
import type { AccessTokenRecord } from '../../src/ports/records.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { BENCH_USER } from './users.ts';

/** What benchmark 1 hands over: the bodies its real-backend row sends and receives. */
export interface PolicyCostInput {
  /** The tools/call request (hello_mcp). */
  callBody: string;
  /** The tools/list request. */
  listBody: string;
  /** The snippets server's answer to it, as it sent it: one SSE event (`event: message`, `data: {…}`). */
  listAnswerSse: string;
}

/** CPU µs per operation, warm: the median of `repeats` runs, and the lowest and highest. */
export interface PerCall {
  us: number;
  min: number;
  max: number;
}

export interface PolicyCost {
  /**
   * `subject` + `screen` of a tools/call body (JSON.parse, the compiled rules, the quota match): what every call pays.
   * A subject per call, of the one token record the gateway's token cache hands out for every call of that token.
   */
  call: PerCall;
  /** The same, a new record object per call: a token's first call (or each call with `tokens.cacheMs: 0`), its user and client built. */
  callNewToken: PerCall;
  /** `subject` + `screen` of a tools/list body (it is not judged; it marks the answer for filtering). */
  listRequest: PerCall;
  /** `filterJson` of the list answer as JSON (parse, each item judged, re-serialised). */
  listJson: PerCall;
  /** `filterSse` of the list answer as the snippets server sends it: a Transform per answer, the event parsed and rewritten. */
  listSse: PerCall;
  /** How many items the list answer had, and how many the bench user is shown. */
  items: number;
  kept: number;
  iterations: number;
}

/**
 * Issue 12, must-show 7, in process: what the dev sample policy (src/dev.ts rules and quotas,
 * compiled once by createEnforcer) costs per call on the gateway's own path (src/proxy/streamable-http.ts:
 * `subject`, then `screen`; for a list, src/proxy/policy-hook.ts `filterAnswer`), for the bench
 * user (reader role, so the call is judged and allowed and hello_mcp falls under no quota: no Store
 * round trip). CPU time of this process (process.cpuUsage) over many iterations after a warm-up,
 * so V8 has optimised the path as a long-running gateway has.
 */
export async function measurePolicyCost(input: PolicyCostInput, options: { iterations: number; repeats: number }): Promise<PolicyCost> {
  const store = SqliteStore.open({ path: ':memory:', clock: systemClock });
  try {
    const policy = policySchema.parse({ rules: DEV_POLICY_RULES, quotas: DEV_POLICY_QUOTAS });
    const enforcer = createEnforcer(policy.rules, {
      backend: 'bench',
      clock: systemClock,
      quotas: (policy.quotas ?? []).map((quota) => ({ scope: 'bench', quota })),
      store,
    });
    if (!enforcer) throw new Error('the dev sample policy compiled to no enforcer');
    const record: AccessTokenRecord = {
      grantId: 'bench',
      clientId: 'https://client.bench/metadata.json',
      userKey: userKeyOf(BENCH_USER),
      user: BENCH_USER,
      scopes: ['mcp:tools'],
      resource: 'http://127.0.0.1/mcp',
      expiresAt: systemClock.nowSeconds() + 3600,
    };
    // What `subject` reads of the request: the socket's address (no rule reads Mcp-Param-* headers).
    const req = { socket: { remoteAddress: '127.0.0.1' }, headers: {} } as unknown as IncomingMessage;
    const callBody = Buffer.from(input.callBody);
    const listBody = Buffer.from(input.listBody);
    const listJson = Buffer.from(jsonOfSse(input.listAnswerSse));
    const listSse = Buffer.from(input.listAnswerSse);

    const screenOf = (body: Buffer, recordOf = () => record) => () => {
      const screening = enforcer.screen(body, subjectOf(enforcer, req, recordOf()), undefined);
      if (screening instanceof Promise || screening.refusal !== undefined) throw new Error('the bench user was refused or charged');
    };
    const subject = subjectOf(enforcer, req, record);
    const filterJson = () => {
      enforcer.filterJson(listJson, subject, false);
    };
    const filtered = JSON.parse(enforcer.filterJson(listJson, subject, false).toString()) as { result: { tools: unknown[] } };
    const all = JSON.parse(listJson.toString()) as { result: { tools: unknown[] } };

    return {
      call: timeSync(screenOf(callBody), options),
      listRequest: timeSync(screenOf(listBody), options),
      listJson: timeSync(filterJson, options),
      listSse: await timeAsync(() => filterSseOnce(enforcer, subject, listSse), { ...options, iterations: Math.ceil(options.iterations / 4) }),
      // Last: the records it leaves behind (and their cached callers) are garbage the others would collect.
      callNewToken: timeSync(
        screenOf(callBody, () => ({ ...record })),
        options,
      ),
      items: all.result.tools.length,
      kept: filtered.result.tools.length,
      iterations: options.iterations,
    };
  } finally {
    await store.close();
  }
}

function subjectOf(enforcer: Enforcer, req: IncomingMessage, record: AccessTokenRecord) {
  const subject = enforcer.subject(req, record);
  if (subject instanceof Promise) throw new Error('the dev sample policy looked something up');
  return subject;
}

/** The one JSON-RPC message of an SSE answer's data lines. */
function jsonOfSse(sse: string): string {
  const data = sse
    .split(/\r\n|\n|\r/)
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).replace(/^ /, ''));
  if (data.length === 0) throw new Error(`no data in the list answer: ${sse.slice(0, 200)}`);
  return data.join('\n');
}

/** One SSE answer through a fresh filter, as src/proxy/policy-hook.ts pipes each list answer. */
function filterSseOnce(enforcer: Enforcer, subject: ReturnType<typeof subjectOf>, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const filter = enforcer.filterSse(subject, false);
    filter.on('data', () => {});
    filter.on('end', resolve);
    filter.on('error', reject);
    filter.end(chunk);
  });
}

/** CPU µs per call of `fn`: a warm-up of `iterations`, then `repeats` timed runs of `iterations`. */
function timeSync(fn: () => void, { iterations, repeats }: { iterations: number; repeats: number }): PerCall {
  for (let i = 0; i < iterations; i++) fn();
  const runs: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const before = process.cpuUsage();
    for (let i = 0; i < iterations; i++) fn();
    const used = process.cpuUsage(before);
    runs.push((used.user + used.system) / iterations);
  }
  return summarise(runs);
}

async function timeAsync(fn: () => Promise<void>, { iterations, repeats }: { iterations: number; repeats: number }): Promise<PerCall> {
  for (let i = 0; i < iterations; i++) await fn();
  const runs: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const before = process.cpuUsage();
    for (let i = 0; i < iterations; i++) await fn();
    const used = process.cpuUsage(before);
    runs.push((used.user + used.system) / iterations);
  }
  return summarise(runs);
}

function summarise(runs: number[]): PerCall {
  const sorted = [...runs].sort((a, b) => a - b);
  return { us: sorted[Math.floor(sorted.length / 2)]!, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}
