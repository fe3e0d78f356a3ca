import type { Audit } from '../audit/audit.ts';
import { SECURITY_EVENT, userFields } from '../audit/events.ts';
import type { PolicyQuotaConfig } from '../config/schema.ts';
import { keys } from '../oauth/keys.ts';
import { type Clock, nowMsOf } from '../ports/clock.ts';
import type { AccessTokenRecord } from '../ports/records.ts';
import type { Store } from '../ports/store.ts';
import { type Condition, compileCondition, type PolicyInput } from './cel.ts';
import { matcherOf } from './policy.ts';

/**
 * Quotas on allowed calls (docs/configuration.md, Quotas): counters in the Store, so every replica
 * shares them; a Store that cannot be reached fails the call (503), never lets it through uncounted.
 * A refused call counts too: a client that ignores Retry-After keeps itself refused.
 */

/** A quota and where its counts live: one backend's name, or `*` for a global one (counted across every backend). */
export interface ScopedQuota {
  scope: string;
  quota: PolicyQuotaConfig;
}

/** Why a call was refused, for its JSON-RPC error's `data` (docs/security.md, Quotas). */
export interface QuotaExceeded {
  quota: string;
  limit: number;
  per: PolicyQuotaConfig['per'];
  windowSeconds: number;
  retryAfterSeconds: number;
}

export interface Quotas {
  /**
   * Counts one allowed call against every quota it falls under, all at once (one Store round trip),
   * resolving to the refusal with the longest wait when one is over its limit. Undefined, without
   * a promise or a Store read, when no quota applies to the call.
   */
  charge(input: PolicyInput, record: AccessTokenRecord): Promise<QuotaExceeded | undefined> | undefined;
}

export interface CompiledQuota {
  scope: string;
  config: PolicyQuotaConfig;
  matches(method: string, name: string): boolean;
  condition: Condition | undefined;
}

/** The quotas a call counts against (compiled once); `policy explain` reads it too. */
export function quotasApplying(quotas: readonly ScopedQuota[]): (input: PolicyInput) => readonly CompiledQuota[] {
  const compiled: CompiledQuota[] = quotas.map(({ scope, quota }) => ({
    scope,
    config: quota,
    matches: matcherOf(quota),
    condition: quota.when === undefined ? undefined : compileCondition(quota.when),
  }));
  // Most calls fall under no quota: answered without building an array (this runs on every call).
  return (input) => {
    let applying: CompiledQuota[] | undefined;
    for (const q of compiled) {
      if (!q.matches(input.method, input.name) || !holds(q.condition, input)) continue;
      applying ??= [];
      applying.push(q);
    }
    return applying ?? NONE;
  };
}

const NONE: readonly CompiledQuota[] = Object.freeze([]);

/** Undefined when there are no quotas. */
export function createQuotas(quotas: readonly ScopedQuota[], deps: { store: Store; clock: Clock; audit?: Audit }): Quotas | undefined {
  if (quotas.length === 0) return undefined;
  const applying = quotasApplying(quotas);

  async function chargeOne(quota: CompiledQuota, input: PolicyInput, record: AccessTokenRecord): Promise<QuotaExceeded | undefined> {
    const { limit, windowSeconds, window: kind } = quota.config;
    const now = nowMsOf(deps.clock) / 1000;
    const index = Math.floor(now / windowSeconds);
    const who = counterOf(quota.config.per, input, record);
    const key = (i: number) => keys.quota(quota.scope, quota.config.name, who, i);
    let current: number;
    let previous = 0;
    if (kind === 'fixed') {
      current = await deps.store.increment(key(index), windowSeconds);
    } else {
      // Sent together: one round trip. The current window's count lives on as the next one's previous.
      const [counted, before] = await Promise.all([deps.store.increment(key(index), 2 * windowSeconds), deps.store.get<number>(key(index - 1))]);
      current = counted;
      previous = before ?? 0;
    }
    const verdict = judgeWindow({ kind, limit, windowSeconds, now, current, previous });
    if (!verdict.over) return undefined;
    // One record per crossing of the limit, not per refused call: a flood must not flood the trail.
    if (verdict.first) {
      deps.audit?.record({
        'event.name': SECURITY_EVENT.rateLimited,
        'gateway.limit': 'quota',
        'gateway.quota': quota.config.name,
        ...userFields(record.user, record.userKey),
        'oauth.client.id': record.clientId,
        'mcp.backend': input.backend,
        'client.address': input.request.ip,
      });
    }
    return { quota: quota.config.name, limit, per: quota.config.per, windowSeconds, retryAfterSeconds: verdict.retryAfterSeconds };
  }

  return {
    charge(input, record) {
      const quotas = applying(input);
      if (quotas.length === 0) return undefined;
      return Promise.all(quotas.map((q) => chargeOne(q, input, record))).then(
        (all) => all.filter((e) => e !== undefined).sort((a, b) => b.retryAfterSeconds - a.retryAfterSeconds)[0],
      );
    },
  };
}

const PER = { user: 'per user', client: 'per client', 'user+tool': 'per user and tool' } as const;

/** "30 calls per user in 60 s": a quota's terms, as the refusal and `policy explain` say them. */
export function quotaTerms(quota: Pick<PolicyQuotaConfig, 'limit' | 'per' | 'windowSeconds'>): string {
  return `${quota.limit} calls ${PER[quota.per]} in ${quota.windowSeconds} s`;
}

/** A quota's `when` that fails to evaluate counts the call (the safe side). */
function holds(condition: Condition | undefined, input: PolicyInput): boolean {
  if (condition === undefined) return true;
  try {
    return condition(input) !== false;
  } catch {
    return true;
  }
}

/** Whose count a call goes to (keys.quota hashes it: a key part free of separators, whatever the ids hold). */
function counterOf(per: PolicyQuotaConfig['per'], input: PolicyInput, record: AccessTokenRecord): string {
  return per === 'client' ? `client\n${record.clientId}` : per === 'user' ? `user\n${record.userKey}` : `user+tool\n${record.userKey}\n${input.method}\n${input.name}`;
}

export interface WindowCounts {
  kind: 'fixed' | 'sliding';
  limit: number;
  windowSeconds: number;
  /** Epoch seconds (fractional). */
  now: number;
  /** This window's count, this call included. */
  current: number;
  /** The previous window's count (sliding only). */
  previous: number;
}

/**
 * Whether a call is over the limit, whether it is the first call over it (the audit record), and
 * when the next call would pass if the client waits. Sliding windows use the two-window
 * approximation: the previous window's count, weighted by how much of a window-length look-back
 * still overlaps it, plus the current window's count.
 */
export function judgeWindow(counts: WindowCounts): { over: boolean; first: boolean; retryAfterSeconds: number } {
  const { kind, limit, windowSeconds, now, current, previous } = counts;
  const windowStart = Math.floor(now / windowSeconds) * windowSeconds;
  const toWindowEnd = windowStart + windowSeconds - now;
  if (kind === 'fixed') {
    return { over: current > limit, first: current === limit + 1, retryAfterSeconds: wholeSeconds(toWindowEnd) };
  }
  const elapsed = (now - windowStart) / windowSeconds;
  const estimate = (count: number) => previous * (1 - elapsed) + count;
  const over = estimate(current) > limit;
  // The next call adds one to this window's count: it passes within this window once enough of
  // the previous one has slid out, or else once enough of this one has in the next.
  let wait: number;
  if (current + 1 <= limit) {
    const passesAt = 1 - (limit - current - 1) / previous;
    wait = (passesAt - elapsed) * windowSeconds;
  } else {
    wait = toWindowEnd + (1 - (limit - 1) / current) * windowSeconds;
  }
  return { over, first: over && estimate(current - 1) <= limit, retryAfterSeconds: wholeSeconds(wait) };
}

/** Retry-After is whole seconds (RFC 9110 §10.2.3): rounded up, at least 1. */
function wholeSeconds(seconds: number): number {
  return Math.max(1, Math.ceil(seconds - 1e-9));
}
