import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { type PolicyQuotaConfig, type PolicyRuleConfig, policySchema } from '../config/schema.ts';
import type { PolicyInput } from './cel.ts';
import { compilePolicy } from './policy.ts';
import { quotasApplying, quotaTerms } from './quota.ts';

/** Who asks for what, as an operator describes it on the command line. */
export interface ExplainQuery {
  backend?: string;
  method: string;
  /** The tool, prompt or resource URI (empty for other methods). */
  name: string;
  user: string;
  roles: string[];
  groups: string[];
  scopes: string[];
  client: string;
  arguments: Record<string, unknown>;
  /** The call's `Mcp-Param-*` headers by lower-case name, decoded (a 2026-07-28 request). */
  params?: Record<string, string>;
  time: Date;
}

/**
 * `policy explain`: the decision the gateway would make for one call, and the rule that made it,
 * from a config file's policy sections alone (no secrets, no IdP: an operator can check rules
 * before deploying them). Returns the lines to print and whether the call is allowed.
 */
export function explainPolicy(configPath: string, query: ExplainQuery): { allowed: boolean; lines: string[] } {
  const raw = (parseYaml(readFileSync(resolve(configPath), 'utf8')) ?? {}) as {
    policy?: unknown;
    backends?: { name?: unknown; policy?: unknown }[];
  };
  const backends = Array.isArray(raw.backends) ? raw.backends : [];
  const backend = query.backend === undefined ? backends[0] : backends.find((b) => b.name === query.backend);
  if (!backend) throw new Error(query.backend === undefined ? 'the config has no backends' : `no backend named ${query.backend}`);
  const index = backends.indexOf(backend);
  const global = sectionOf(raw.policy, 'policy');
  const own = sectionOf(backend.policy, `backends.${index}.policy`);
  const rules: PolicyRuleConfig[] = [...global.rules, ...own.rules];
  const policy = compilePolicy(rules);
  const call = query.name ? `${query.method} ${query.name}` : query.method;
  const who = `${query.user} (roles: ${query.roles.join(', ') || 'none'}; groups: ${query.groups.join(', ') || 'none'}; scopes: ${query.scopes.join(' ') || 'none'})`;
  const head = `${call} on ${String(backend.name)} by ${who}:`;
  if (policy && !policy.governs(query.method)) {
    return { allowed: true, lines: [head, `allowed: ${query.method} is never refused by the policy (lists are filtered instead)`] };
  }
  const input: PolicyInput = {
    user: { oid: '', tid: '', sub: query.user, name: query.user, preferred_username: query.user, email: '', roles: query.roles, groups: query.groups, idp: '', kind: 'person' },
    client: { client_id: query.client, name: query.client, kind: /^https?:\/\//.test(query.client) ? 'cimd' : 'dcr' },
    scopes: query.scopes,
    backend: String(backend.name),
    method: query.method,
    name: query.name,
    arguments: query.arguments,
    request: { ip: '127.0.0.1', time: query.time, params: { ...query.params } },
  };
  // An allowed call is then counted against the quotas it falls under (src/policy/quota.ts).
  const quotas = quotasApplying([...global.quotas, ...own.quotas].map((quota) => ({ scope: '', quota })))(input).map((q) => quotaLine(q.config));
  if (!policy) return { allowed: true, lines: [head, 'allowed: the backend has no rules (every signed-in user may call everything)', ...quotas] };
  const decision = policy.decide(input);
  const verdict = decision.allowed
    ? `allowed by rule "${decision.rule}"`
    : decision.missingScopes
      ? `needs scope ${decision.missingScopes.join(' ')} (step-up, rule "${decision.rule}"): a token without it gets 403 insufficient_scope and the client asks the user for it`
      : decision.rule
      ? `denied by rule "${decision.rule}"`
      : 'denied: no rule allows it (once a backend has rules, what none allows is denied)';
  return { allowed: decision.allowed, lines: [head, verdict, ...(decision.allowed ? quotas : [])] };
}

function quotaLine(quota: PolicyQuotaConfig): string {
  return `counted by quota "${quota.name}": at most ${quotaTerms(quota)} (${quota.window} window)`;
}

/** One policy section, checked as the gateway checks it at start (errors name the key). */
function sectionOf(section: unknown, key: string): { rules: PolicyRuleConfig[]; quotas: PolicyQuotaConfig[] } {
  if (section === undefined) return { rules: [], quotas: [] };
  const parsed = policySchema.safeParse(section);
  if (!parsed.success) {
    throw new Error(parsed.error.issues.map((i) => `${[key, ...i.path].join('.')}: ${i.message}`).join('\n'));
  }
  return { rules: parsed.data.rules, quotas: parsed.data.quotas ?? [] };
}
