import type { IncomingMessage } from 'node:http';
import { Transform } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type { Audit } from '../audit/audit.ts';
import { NOT_JSON, type ParsedBody, parsedBody } from '../http/parsed-body.ts';
import type { PolicyRuleConfig } from '../config/schema.ts';
import { type Clock, nowMsOf } from '../ports/clock.ts';
import type { AccessTokenRecord } from '../ports/records.ts';
import type { Store } from '../ports/store.ts';
import { ClientFactsCel, type PolicyInput, RequestFacts, type RequestSource, UserFacts } from './cel.ts';
import { paramHeadersOf } from './param-headers.ts';
import { compilePolicy, type Decision, isGoverned, LIST_ITEMS, type Policy, READS_PARAMS } from './policy.ts';
import { createQuotas, type QuotaExceeded, type Quotas, quotaTerms, type ScopedQuota } from './quota.ts';

/**
 * The policy on the wire (docs/security.md, Per-tool policy): requests are judged before the
 * backend sees them, and list results are filtered on their way back, in JSON and in SSE answers.
 */

/** JSON-RPC 2.0 §5.1. */
const INVALID_PARAMS = -32602;
const METHOD_NOT_FOUND = -32601;
const SERVER_ERROR = -32000;
/**
 * A call over a quota. JSON-RPC 2.0 §5.1 leaves -32000…-32099 to implementations; -32005 is
 * "Limit exceeded" in EIP-1474, the JSON-RPC convention most clients already know for rate limits,
 * and is used by neither MCP nor its SDKs.
 */
export const RATE_LIMITED = -32005;

type Id = string | number | null;
interface Refusal {
  jsonrpc: '2.0';
  error: { code: number; message: string; data?: unknown };
  id: Id;
}

/** The whole body waits for a step-up: the token lacks these scopes for a call that is otherwise allowed. */
export interface ScopeChallenge {
  missingScopes: string[];
}

export interface ClientFacts {
  name: string;
  /** `dcr`, `cimd` or `config` (how the client registered). */
  kind: string;
}

/**
 * The caller, as every condition of one request sees it, and the token it came with (quotas).
 * Its user and client are built once per token record; its request per request, the address and
 * time read only when something reads them.
 */
export type Subject = Omit<PolicyInput, 'method' | 'name' | 'arguments'> & { record: AccessTokenRecord };

export interface Enforcer {
  /**
   * Judges a request body (one message or a batch). Undefined when everything may go to the
   * backend; otherwise the gateway's own answer to the whole body (refused requests answered as
   * the SDK answers an unknown tool, prompt, resource or method, so hidden names cannot be probed),
   * or a ScopeChallenge when a call in it needs scopes the token lacks (answered 403 by the caller).
   * `judged` hears each governed message's decision, by its index in the body (the audit trail).
   * Allowed calls are then counted against the quotas: a promise only when a quota applies to one
   * of them (one Store round trip); otherwise answered without one. `body`: its bytes, or the body
   * parsed once for every reader of it (src/http/parsed-body.ts).
   */
  screen(body: Buffer | ParsedBody, subject: Subject, judged?: (index: number, decision: Decision) => void): Screening | Promise<Screening>;
  /** A JSON answer with its list results filtered (the same Buffer when nothing changed). */
  filterJson(body: Buffer, subject: Subject, privateCache: boolean): Buffer;
  /** An SSE stream's events, list results filtered and everything else passed as it arrives; `inject` writes an event between events. */
  filterSse(subject: Subject, privateCache: boolean): Transform & { inject(message: unknown): void };
  /** The caller; a promise only when something is looked up (a rule reads the client's name or kind, or a user's overage groups). */
  subject(req: IncomingMessage, record: AccessTokenRecord): Subject | Promise<Subject>;
}

export interface Screening {
  /**
   * Undefined when everything may go to the backend; otherwise the gateway's own answer to the
   * whole body, or a ScopeChallenge when a call in it needs scopes the token lacks.
   */
  refusal: Refusal | Refusal[] | ScopeChallenge | undefined;
  /** When a quota refused a call of the body: seconds until the next one would pass (the HTTP answer's Retry-After, where there is one). */
  retryAfterSeconds?: number;
  /**
   * The body asks for a list (tools/list, prompts/list, resources/list, resources/templates/list):
   * only then can its answer hold list results to filter (a response answers a request of the
   * same POST, MCP streamable-http §Sending Messages to the Server), so only then is it filtered.
   * Never when the backend has no rules (quotas alone filter nothing).
   */
  asksForLists: boolean;
}

/** The list methods whose results are filtered (their items judged by LIST_ITEMS). */
const LIST_METHODS = new Set(['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list']);

/** Global rules first, then the backend's; undefined when neither has any rule nor quota (the backend behaves as without policy). */
export function createEnforcer(
  rules: readonly PolicyRuleConfig[],
  deps: {
    backend: string;
    clock: Clock;
    describeClient?: (clientId: string) => Promise<ClientFacts>;
    /** The groups of a user with a groups overage, or undefined when they cannot be known (src/oauth/graph-groups.ts). */
    overageGroups?: (record: AccessTokenRecord) => Promise<string[] | undefined>;
    /** Global quotas first, then the backend's; counted in `store`. */
    quotas?: readonly ScopedQuota[];
    store?: Store;
    audit?: Audit;
    /** `request.ip`: the client's address (default: the socket's; src/http/client-ip.ts honours trustProxy). */
    clientIp?: (req: IncomingMessage) => string;
  },
): Enforcer | undefined {
  const policy = compilePolicy(rules);
  const scoped = deps.quotas ?? [];
  if (scoped.length > 0 && !deps.store) throw new Error('quotas need a store');
  const quotas = deps.store ? createQuotas(scoped, { store: deps.store, clock: deps.clock, audit: deps.audit }) : undefined;
  if (!policy && !quotas) return undefined;
  // A quota's `when` sees the same subject as a rule's.
  const conditions = [...rules.map((r) => r.when), ...scoped.map((q) => q.quota.when)];
  const readsClient = conditions.some((when) => when !== undefined && /\bclient\s*\.\s*(name|kind)\b/.test(when));
  const readsGroups = rules.some((r) => r.groups !== undefined) || conditions.some((when) => when !== undefined && /\buser\s*\.\s*groups\b/.test(when));
  // The Mcp-Param-* headers are read only for a condition that reads them (none: no cost per call).
  const readsParams = conditions.some((when) => when !== undefined && READS_PARAMS.test(when));
  const clientIp = deps.clientIp ?? ((req: IncomingMessage) => req.socket.remoteAddress ?? '');
  const requestSource: RequestSource<IncomingMessage> = { ip: clientIp, nowMs: () => nowMsOf(deps.clock) };
  // The user and client of a token without lookups, built once per record: the token cache
  // (src/oauth/grants.ts validateAccessToken) hands out the same record object while it holds it.
  const callers = new WeakMap<AccessTokenRecord, Pick<Subject, 'user' | 'client'>>();
  return {
    screen: (body, subject, judged) => screen(policy, quotas, body, subject, judged),
    filterJson(body, subject, privateCache) {
      if (!policy) return body;
      let message: unknown;
      try {
        message = JSON.parse(body.toString('utf8'));
      } catch {
        return body;
      }
      const messages = Array.isArray(message) ? message : [message];
      let changed = false;
      for (const m of messages) if (filterList(policy, m, subject, privateCache)) changed = true;
      return changed ? Buffer.from(JSON.stringify(message)) : body;
    },
    filterSse: (subject, privateCache) => sseFilter(policy && ((m) => filterList(policy, m, subject, privateCache))),
    subject(req, record) {
      const describe = readsClient ? deps.describeClient : undefined;
      const groupsOf = readsGroups && record.user.groupsOverage ? deps.overageGroups : undefined;
      if (describe || groupsOf) return subjectLookedUp(req, record, describe, groupsOf);
      let caller = callers.get(record);
      if (caller === undefined) {
        caller = callerOf(record, { name: '', kind: clientKind(record.clientId) }, undefined);
        callers.set(record, caller);
      }
      return subjectOf(req, record, caller);
    },
  };

  async function subjectLookedUp(
    req: IncomingMessage,
    record: AccessTokenRecord,
    describe: ((clientId: string) => Promise<ClientFacts>) | undefined,
    groupsOf: ((record: AccessTokenRecord) => Promise<string[] | undefined>) | undefined,
  ): Promise<Subject> {
    const client = describe ? await describe(record.clientId) : { name: '', kind: clientKind(record.clientId) };
    return subjectOf(req, record, callerOf(record, client, groupsOf ? await groupsOf(record) : undefined));
  }

  function subjectOf(req: IncomingMessage, record: AccessTokenRecord, caller: Pick<Subject, 'user' | 'client'>): Subject {
    // The Mcp-Param-* headers are read only when a condition reads them.
    const request = new RequestFacts(req, requestSource, readsParams ? paramHeadersOf(req) : undefined);
    return { user: caller.user, client: caller.client, scopes: record.scopes, backend: deps.backend, request, record };
  }
}

/** `overage`: the groups read for a user with a groups overage (undefined when unknown or not read). */
function callerOf(record: AccessTokenRecord, client: ClientFacts, overage: string[] | undefined): Pick<Subject, 'user' | 'client'> {
  const user = record.user;
  // A groups overage: the token's groups are incomplete. Read from Graph when a rule needs them;
  // unknown (a Graph outage, no resolver) fails every condition on groups (deny, never allow).
  const groups = user.groupsOverage ? overage : user.groups;
  return {
    user: new UserFacts({
      oid: user.objectId ?? '',
      tid: user.tenantId ?? '',
      sub: user.subject,
      name: user.name ?? '',
      preferred_username: user.preferredUsername ?? '',
      email: user.email ?? '',
      roles: user.roles,
      ...(groups === undefined ? {} : { groups }),
      idp: user.issuer,
      kind: user.kind ?? 'person',
    }),
    client: new ClientFactsCel({ client_id: record.clientId, name: client.name, kind: client.kind }),
  };
}

/** Without a lookup: metadata-document clients are named by their URL; the rest registered one way or another. */
function clientKind(clientId: string): string {
  return /^https?:\/\//.test(clientId) ? 'cimd' : 'dcr';
}

const NO_SCOPES: readonly string[] = [];

function screen(
  policy: Policy | undefined,
  quotas: Quotas | undefined,
  body: Buffer | ParsedBody,
  subject: Subject,
  judged?: (index: number, decision: Decision) => void,
): Screening | Promise<Screening> {
  const message = Buffer.isBuffer(body) ? parsedBody(body).message : body.message;
  // The backend answers garbage with its own parse error.
  if (message === NOT_JSON) return { refusal: undefined, asksForLists: false };
  const batch = Array.isArray(message);
  const messages: unknown[] = batch ? message : [message];
  // Plain loops: this runs on every call.
  let asksForLists = false;
  const inputs: (PolicyInput | undefined)[] = [];
  for (const m of messages) {
    if (policy !== undefined && isObject(m) && typeof m['method'] === 'string' && LIST_METHODS.has(m['method'])) asksForLists = true;
    inputs.push(inputOf(m, subject));
  }
  let missing: Set<string> | undefined;
  let refusals: (Refusal | undefined)[] | undefined;
  if (policy) {
    for (let i = 0; i < messages.length; i++) {
      const refusal = refusalOf(policy, messages[i], inputs[i], (decision) => {
        for (const scope of decision.missingScopes ?? NO_SCOPES) {
          missing ??= new Set();
          missing.add(scope);
        }
        judged?.(i, decision);
      });
      if (refusal === undefined) continue;
      refusals ??= new Array<Refusal | undefined>(messages.length).fill(undefined);
      refusals[i] = refusal;
    }
  }
  // A step-up is answered for the whole body (HTTP 403): the client re-authorizes and sends it again.
  if (missing !== undefined) return { refusal: { missingScopes: [...missing] }, asksForLists };
  if (refusals !== undefined) return { refusal: answerOf(batch, messages, refusals), asksForLists };
  // Only calls the policy lets through are counted (none when it refuses one of a batch), and
  // only a call a quota applies to waits for the Store.
  if (!quotas) return { refusal: undefined, asksForLists };
  let charges: (Promise<QuotaExceeded | undefined> | undefined)[] | undefined;
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i];
    const charge = input ? quotas.charge(input, subject.record) : undefined;
    if (charge === undefined) continue;
    charges ??= new Array<Promise<QuotaExceeded | undefined> | undefined>(inputs.length).fill(undefined);
    charges[i] = charge;
  }
  if (charges === undefined) return { refusal: undefined, asksForLists };
  return Promise.all(charges).then((exceeded) => {
    if (exceeded.every((e) => e === undefined)) return { refusal: undefined, asksForLists };
    const retryAfterSeconds = Math.max(...exceeded.map((e) => e?.retryAfterSeconds ?? 0));
    const refusal = answerOf(
      batch,
      messages,
      exceeded.map((e, i) => (e ? rateLimited(idOf(messages[i]) ?? null, e) : undefined)),
    );
    return { refusal, retryAfterSeconds, asksForLists };
  });
}

/** The gateway's answer to a body with at least one refused request. */
function answerOf(batch: boolean, messages: unknown[], refusals: (Refusal | undefined)[]): Refusal | Refusal[] {
  if (!batch) return refusals[0]!;
  // A batch (2025-03-26) with a refused request is answered whole by the gateway: the others are
  // not forwarded, and say so (the client may send them alone).
  return messages.flatMap((m, i) => {
    const id = idOf(m);
    if (refusals[i]) return [refusals[i]];
    return id === undefined ? [] : [refused(id, SERVER_ERROR, 'Batch not forwarded: another request in it was refused; send this one alone')];
  });
}

/** A governed call as conditions see it; undefined for responses, plumbing and lists. */
function inputOf(message: unknown, subject: Subject): PolicyInput | undefined {
  if (!isObject(message) || typeof message['method'] !== 'string') return undefined;
  const method = message['method'];
  if (!isGoverned(method)) return undefined;
  const params = isObject(message['params']) ? message['params'] : {};
  const name = method === 'resources/read' ? params['uri'] : params['name'];
  const args = isObject(params['arguments']) ? params['arguments'] : {};
  return callInput(subject, method, typeof name === 'string' ? name : '', args);
}

/** One object of one shape per call (no copy of the subject). */
function callInput(subject: Subject, method: string, name: string, args: Record<string, unknown>): PolicyInput {
  return { user: subject.user, client: subject.client, scopes: subject.scopes, backend: subject.backend, request: subject.request, method, name, arguments: args };
}

/** The answer to a call over a quota: the reason and the wait in the message (read by people and models), both in `data` (read by programs). */
function rateLimited(id: Id, exceeded: QuotaExceeded): Refusal {
  const message = `Rate limit exceeded: quota "${exceeded.quota}" allows ${quotaTerms(exceeded)}; retry in ${exceeded.retryAfterSeconds} s`;
  return refused(id, RATE_LIMITED, message, exceeded);
}

/** The refusal of one message, or undefined when it may pass (responses, plumbing, allowed calls). */
function refusalOf(policy: Policy, message: unknown, input: PolicyInput | undefined, judged?: (decision: Decision) => void): Refusal | undefined {
  if (input === undefined) return undefined;
  const method = input.method;
  const decision = policy.decide(input);
  judged?.(decision);
  if (decision.allowed) return undefined;
  const id = idOf(message) ?? null;
  // The answers of the MCP SDK's McpServer for what it does not have.
  if (method === 'tools/call') return refused(id, INVALID_PARAMS, `Tool ${input.name} not found`);
  if (method === 'prompts/get') return refused(id, INVALID_PARAMS, `Prompt ${input.name} not found`);
  if (method === 'resources/read') return refused(id, INVALID_PARAMS, `Resource not found: ${input.name}`, { uri: input.name });
  return refused(id, METHOD_NOT_FOUND, 'Method not found');
}

function refused(id: Id, code: number, message: string, data?: unknown): Refusal {
  return { jsonrpc: '2.0', error: data === undefined ? { code, message } : { code, message, data }, id };
}

/**
 * Filters a list result in place (tools, prompts, resources, resourceTemplates): an item stays
 * when the call it names would be allowed. True when the message was a list result.
 */
function filterList(policy: Policy, message: unknown, subject: Subject, privateCache: boolean): boolean {
  if (!isObject(message) || !isObject(message['result']) || !('id' in message)) return false;
  const result = message['result'];
  let filtered = false;
  for (const key of Object.keys(LIST_ITEMS) as (keyof typeof LIST_ITEMS)[]) {
    const items = result[key];
    if (!Array.isArray(items)) continue;
    // One input for the list, its name set per item (decide keeps nothing of it).
    const input = callInput(subject, LIST_ITEMS[key], '', {});
    result[key] = items.filter((item) => {
      if (!isObject(item)) return false;
      const name = key === 'tools' || key === 'prompts' ? item['name'] : key === 'resources' ? item['uri'] : item['uriTemplate'];
      if (typeof name !== 'string') return false;
      input.name = name;
      return policy.decide(input, true).allowed;
    });
    filtered = true;
  }
  // 2026-07-28: a result filtered per user must not be shared by caches across users.
  if (filtered && privateCache) result['cacheScope'] = 'private';
  return filtered;
}

/**
 * Splits an SSE stream into events (WHATWG HTML §9.2.6: an event ends with a blank line); an
 * event whose data is a list result is re-written, every other event passes byte for byte, each
 * as soon as it is complete.
 */
function sseFilter(rewrite: ((message: unknown) => boolean) | undefined): Transform & { inject(message: unknown): void } {
  let pending = '';
  // A chunk may end inside a multi-byte character.
  const decoder = new StringDecoder('utf8');
  const boundary = /\r\n\r\n|\n\n|\r\r/g;
  const transform = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      pending += decoder.write(chunk);
      let start = 0;
      boundary.lastIndex = 0;
      let out = '';
      for (let match = boundary.exec(pending); match; match = boundary.exec(pending)) {
        const end = match.index + match[0].length;
        out += rewrite ? rewriteEvent(pending.slice(start, end), rewrite) : pending.slice(start, end);
        start = end;
      }
      pending = pending.slice(start);
      callback(null, out.length > 0 ? out : undefined);
    },
    flush(callback) {
      pending += decoder.end();
      callback(null, pending.length > 0 ? pending : undefined);
    },
  }) as Transform & { inject(message: unknown): void };
  transform.inject = (message) => {
    if (pending.length === 0) transform.push(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
    else pending = `event: message\ndata: ${JSON.stringify(message)}\n\n${pending}`;
  };
  return transform;
}

function rewriteEvent(event: string, rewrite: (message: unknown) => boolean): string {
  const lines = event.split(/\r\n|\n|\r/);
  const data: string[] = [];
  for (const line of lines) if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  if (data.length === 0) return event;
  const text = data.join('\n');
  if (!text.includes('"result"')) return event;
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    return event;
  }
  if (!rewrite(message)) return event;
  const kept = lines.filter((line) => line !== '' && !line.startsWith('data:'));
  return `${[...kept, `data: ${JSON.stringify(message)}`].join('\n')}\n\n`;
}

function idOf(message: unknown): Id | undefined {
  if (!isObject(message)) return undefined;
  const id = message['id'];
  return typeof id === 'string' || typeof id === 'number' ? id : id === null ? null : undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
