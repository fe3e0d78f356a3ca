import type { Logger } from 'pino';
import { type EntraIdpConfig, isLoopbackHost } from '../config/schema.ts';
import { createBoundedCache } from '../ports/bounded-cache.ts';
import { type Clock, nowMsOf } from '../ports/clock.ts';
import { UpstreamRefusedError, type UpstreamIdp, type UpstreamTokens } from '../ports/idp.ts';
import type { AccessTokenRecord, GrantRecord } from '../ports/records.ts';
import type { Store } from '../ports/store.ts';
import { keys } from './keys.ts';
import { createSafeFetch, type SafeFetch } from './safe-fetch.ts';
import type { Sealer } from './secrets.ts';

/**
 * Delegated permission the Graph token is asked for. POST /me/getMemberGroups for the signed-in
 * user needs only User.Read (Graph API reference, user: getMemberGroups, "Group memberships for
 * the signed-in user"; User.Read is in the default upstream scopes, consented with the sign-in),
 * where reading other users' groups needs GroupMember.Read.All (admin consent). Unprefixed, Entra
 * reads it as a scope of its cloud's Graph.
 */
export const GRAPH_SCOPE = 'User.Read';

interface CachedGroups {
  groups: string[];
}

/** After a failed read from Entra or Graph, the user's groups stay unknown this long without asking again. */
export const GRAPH_FAILURE_MEMORY_MS = 30_000;
/** Users whose failed read is remembered (in process); past it the oldest is forgotten and asked again. */
const GRAPH_FAILURE_MEMORY_MAX_USERS = 10_000;

interface RememberedFailure {
  reason: string;
  untilMs: number;
}

export interface GraphGroupsOptions {
  /** e.g. https://graph.microsoft.com (config upstream.entra.graphHost). */
  graphHost: string;
  cacheSeconds: number;
}

/**
 * The groups of a user whose id_token had a groups overage (Entra: more groups than fit in a token;
 * `_claim_names`/`hasgroups` instead of `groups`; id-token-claims-reference.md, "Groups overage
 * claim"). Read from Microsoft Graph with a token redeemed from the grant's stored Entra refresh
 * token (no new sign-in): POST /v1.0/me/getMemberGroups `{securityEnabledOnly: true}`, the
 * transitive security groups, which is what the `groups` claim holds when the app emits security
 * groups (up to 11,000 ids in one answer, no paging). Cached in the Store per user for
 * `cacheSeconds`. Undefined when they cannot be read (Graph or Entra down, refused, a grant
 * without an upstream refresh token): the caller must then treat the groups as unknown — never as
 * none — and the reason is logged here. A failed call to Entra or Graph is remembered per user for
 * GRAPH_FAILURE_MEMORY_MS (in process, on the Clock), so an outage costs one attempt per user per
 * 30 s, not one per request (a hanging Graph holds each attempt up to its timeout); concurrent
 * lookups for one user share one in-flight read.
 */
export function createGraphGroups(
  deps: { store: Store; sealer: Sealer; idp: UpstreamIdp; fetch: SafeFetch; clock: Clock; logger: Pick<Logger, 'warn'> },
  options: GraphGroupsOptions,
) {
  const endpoint = new URL('/v1.0/me/getMemberGroups', options.graphHost);
  const failures = createBoundedCache<string, RememberedFailure>(GRAPH_FAILURE_MEMORY_MAX_USERS);
  // Bounded by the requests in progress: each entry leaves when its read settles.
  const inFlight = new Map<string, Promise<string[] | undefined>>();
  const warn = (record: AccessTokenRecord, reason: string, err?: unknown): undefined => {
    deps.logger.warn(
      { userKey: record.userKey, graph: endpoint.origin, ...(err ? { err } : {}) },
      `groups overage: the user's groups could not be read from Microsoft Graph (${reason}); rules on groups deny this request`,
    );
    return undefined;
  };
  /** A failed call to Entra or Graph: logged, and remembered so the next requests do not call again. */
  const unknown = (record: AccessTokenRecord, reason: string, err?: unknown): undefined => {
    failures.set(record.userKey, { reason, untilMs: nowMsOf(deps.clock) + GRAPH_FAILURE_MEMORY_MS });
    return warn(record, reason, err);
  };

  return function groupsOf(record: AccessTokenRecord): Promise<string[] | undefined> {
    const pending = inFlight.get(record.userKey);
    if (pending) return pending;
    const lookup = read(record).finally(() => inFlight.delete(record.userKey));
    inFlight.set(record.userKey, lookup);
    return lookup;
  };

  async function read(record: AccessTokenRecord): Promise<string[] | undefined> {
    const key = keys.graphGroups(record.userKey);
    const cached = await deps.store.get<CachedGroups>(key);
    if (cached) return cached.groups;
    const failed = failures.get(record.userKey);
    if (failed && nowMsOf(deps.clock) < failed.untilMs) {
      const seconds = Math.ceil((failed.untilMs - nowMsOf(deps.clock)) / 1000);
      return warn(record, `${failed.reason}; not asked again for ${seconds} s`);
    }
    const grant = await deps.store.get<GrantRecord>(keys.grant(record.grantId));
    const opened = grant?.upstream ? deps.sealer.open(grant.upstream) : undefined;
    // Not remembered: nothing was called, and another grant of the user may hold upstream tokens.
    if (!opened) return warn(record, 'the grant holds no upstream tokens');
    let token: string;
    try {
      if (!deps.idp.downstreamToken) return warn(record, 'the upstream IdP cannot mint a Graph token');
      // Entra's refresh token redeemed for Graph (a multi-resource refresh token), used once and not kept.
      token = (await deps.idp.downstreamToken(JSON.parse(opened) as UpstreamTokens, { via: 'refresh', scopes: [GRAPH_SCOPE] })).accessToken;
    } catch (error) {
      const why = error instanceof UpstreamRefusedError ? `Entra refused a Graph token: ${error.upstreamError}` : 'no Graph token from Entra';
      return unknown(record, why, error);
    }
    let answer: Awaited<ReturnType<SafeFetch>>;
    try {
      answer = await deps.fetch(endpoint, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ securityEnabledOnly: true }),
      });
    } catch (error) {
      return unknown(record, `Graph unreachable: ${(error as Error).message}`, error);
    }
    if (answer.status !== 200) return unknown(record, `Graph answered ${answer.status}${graphErrorCode(answer.body)}`);
    let groups: unknown;
    try {
      groups = (JSON.parse(answer.body) as { value?: unknown }).value;
    } catch {
      groups = undefined;
    }
    if (!Array.isArray(groups) || !groups.every((g) => typeof g === 'string')) return unknown(record, 'Graph answered without a list of group ids');
    await deps.store.set(key, { groups } satisfies CachedGroups, options.cacheSeconds);
    failures.delete(record.userKey);
    return groups as string[];
  }
}

export type GraphGroups = ReturnType<typeof createGraphGroups>;

/** A Graph call is answered within this, or the groups count as unknown for this request. */
const GRAPH_TIMEOUT_MS = 5000;
/** 11,000 group ids (getMemberGroups' most) of 36 characters, quoted, with commas: ~0.5 MB. */
const GRAPH_MAX_BYTES = 1024 * 1024;

/**
 * The resolver for `upstream.entra`: Graph fetched with the SSRF guard (safe-fetch.ts: https, no
 * private addresses, bounded in time and size, no redirects); http only for a loopback Graph (tests).
 */
export function createEntraGraphGroups(
  entra: Pick<EntraIdpConfig, 'graphHost' | 'groupsCacheSeconds'>,
  deps: { store: Store; sealer: Sealer; idp: UpstreamIdp; clock: Clock; logger: Pick<Logger, 'warn'> },
): GraphGroups {
  const graphHost = entra.graphHost ?? 'https://graph.microsoft.com';
  const graph = new URL(graphHost);
  const loopbackHttp = graph.protocol === 'http:' && isLoopbackHost(graph.hostname);
  if (graph.protocol !== 'https:' && !loopbackHttp) throw new Error('upstream.entra.graphHost: must be https (http only on loopback)');
  const fetch = createSafeFetch({ timeoutMs: GRAPH_TIMEOUT_MS, maxBytes: GRAPH_MAX_BYTES, allowInsecure: loopbackHttp });
  return createGraphGroups({ ...deps, fetch }, { graphHost, cacheSeconds: entra.groupsCacheSeconds ?? 600 });
}

/** Graph's error JSON: `{ error: { code, message } }`. */
function graphErrorCode(body: string): string {
  try {
    const code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? ` ${code}` : '';
  } catch {
    return '';
  }
}
