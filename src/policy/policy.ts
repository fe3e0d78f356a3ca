import type { PolicyRuleConfig } from '../config/schema.ts';
import { type Condition, compileCondition, type PolicyInput } from './cel.ts';

/**
 * Who may do what on one backend: ordered allow/deny rules over MCP operations, compiled once at
 * start (docs/security.md, Per-tool policy). Deny wins over allow; once a backend has rules, what
 * no rule allows is denied; a condition that fails to evaluate counts against the caller. A step-up
 * rule only speaks to a call some rule allows: it names scopes the token must also carry.
 */

/** Methods the policy never refuses: the session's plumbing, and the lists (filtered instead). */
const UNGOVERNED_METHODS = new Set(['initialize', 'ping', 'tools/list', 'prompts/list', 'resources/list', 'resources/templates/list']);

/** The item-level method each list's items are judged by (an item is listed when that call would be allowed). */
export const LIST_ITEMS = {
  tools: 'tools/call',
  prompts: 'prompts/get',
  resources: 'resources/read',
  resourceTemplates: 'resources/read',
} as const;

interface CompiledRule {
  name: string;
  deny: boolean;
  matches(method: string, name: string): boolean;
  condition: Condition | undefined;
  /**
   * The condition reads the call's `arguments` or their `Mcp-Param-*` headers (`request.params`):
   * when judging a list item (neither known), a deny rule is skipped and an allow rule counts.
   */
  usesArguments: boolean;
  /** A step-up rule's scopes (its condition is then the rest of the rule). */
  requires: readonly string[] | undefined;
  /** This rule's decision, built once (decisions are only read). */
  decided: Readonly<Decision>;
}

/** A condition reads the call's `Mcp-Param-*` headers (`request.params`). */
export const READS_PARAMS = /\brequest\s*\.\s*params\b/;

/** No rule allowed it. */
const NOT_ALLOWED: Readonly<Decision> = Object.freeze({ allowed: false });

export interface Decision {
  allowed: boolean;
  /** The rule that decided (undefined: no rule allowed it). */
  rule?: string;
  /**
   * Refused only for these scopes, which the token lacks: the call is allowed once it carries
   * them (step-up, MCP 2025-11-25 authorization §Scope Challenge Handling).
   */
  missingScopes?: string[];
}

export interface Policy {
  /** Whether this method is judged at all (plumbing and lists are not). */
  governs(method: string): boolean;
  /** The decision for one call; `listing` judges a list item (no arguments known). */
  decide(input: PolicyInput, listing?: boolean): Decision;
}

/** Whether the policy (and a quota) judges this method: plumbing and lists are not. */
export function isGoverned(method: string): boolean {
  return !UNGOVERNED_METHODS.has(method) && !method.startsWith('notifications/');
}

/** The backend's policy, or undefined when no rule applies to it (the backend behaves as without policy). */
export function compilePolicy(rules: readonly PolicyRuleConfig[]): Policy | undefined {
  if (rules.length === 0) return undefined;
  const compiled = rules.map(compileRule);
  return {
    governs: isGoverned,
    decide(input, listing = false) {
      let allowedBy: CompiledRule | undefined;
      let stepUp: { rule: string; missing: Set<string> } | undefined;
      for (const rule of compiled) {
        if (!rule.matches(input.method, input.name)) continue;
        if (rule.requires) {
          // Lists show what a step-up would allow: the client must see a tool to ask for its scope.
          if (listing) continue;
          const missing = rule.requires.filter((s) => !input.scopes.includes(s));
          // A condition that fails to evaluate requires the scopes (fail closed).
          if (missing.length === 0 || (rule.condition !== undefined && evaluate(rule.condition, input) === false)) continue;
          stepUp ??= { rule: rule.name, missing: new Set() };
          for (const s of missing) stepUp.missing.add(s);
          continue;
        }
        if (listing && rule.usesArguments) {
          if (!rule.deny && allowedBy === undefined) allowedBy = rule;
          continue;
        }
        const holds = rule.condition === undefined ? true : evaluate(rule.condition, input);
        // A deny rule whose condition fails to evaluate denies (fail closed).
        if (rule.deny && holds !== false) return rule.decided;
        if (!rule.deny && holds === true && allowedBy === undefined) allowedBy = rule;
      }
      if (allowedBy === undefined) return NOT_ALLOWED;
      // Only a call that would be allowed is challenged: a hidden name never learns of scopes.
      if (stepUp) return { allowed: false, rule: stepUp.rule, missingScopes: [...stepUp.missing] };
      return allowedBy.decided;
    },
  };
}

/** true, false, or undefined when the condition failed at run time (a missing key, a type error). */
function evaluate(condition: Condition, input: PolicyInput): boolean | undefined {
  try {
    const value = condition(input);
    return value === true ? true : value === false ? false : undefined;
  } catch {
    return undefined;
  }
}

function compileRule(rule: PolicyRuleConfig): CompiledRule {
  const stepUp = rule.effect === 'step-up';
  // A step-up rule's scopes are what it requires, not when it applies.
  const expression = conditionOf(stepUp ? { ...rule, scopes: undefined } : rule);
  return {
    name: rule.name,
    deny: rule.effect === 'deny',
    matches: matcherOf(rule),
    condition: expression === undefined ? undefined : compileCondition(expression),
    usesArguments: expression !== undefined && (/\barguments\b/.test(expression) || READS_PARAMS.test(expression)),
    requires: stepUp ? (rule.scopes ?? []) : undefined,
    // A deny rule decides by denying, an allow rule by allowing (a step-up rule's decision names the scopes it misses: built per call).
    decided: Object.freeze({ allowed: rule.effect !== 'deny', rule: rule.name }),
  };
}

/** The shorthands and `when`, as one CEL expression (all must hold). */
export function conditionOf(rule: Pick<PolicyRuleConfig, 'roles' | 'groups' | 'scopes' | 'when'>): string | undefined {
  const parts: string[] = [];
  // roles / groups: any one of them; scopes: all of them (a grant either carries a scope or not).
  // One `in` test per name: the cheapest form cel-js evaluates (no comprehension, no list built).
  if (rule.roles) parts.push(inList(rule.roles, 'user.roles', ' || ', `user.roles.exists(r, r in ${celList(rule.roles)})`));
  if (rule.groups) parts.push(inList(rule.groups, 'user.groups', ' || ', `user.groups.exists(g, g in ${celList(rule.groups)})`));
  if (rule.scopes) parts.push(inList(rule.scopes, 'scopes', ' && ', `${celList(rule.scopes)}.all(s, s in scopes)`));
  if (rule.when) parts.push(`(${rule.when})`);
  return parts.length === 0 ? undefined : parts.join(' && ');
}

/**
 * `"a" in list || "b" in list` (any of them) or `… && …` (all of them), an error when the list
 * cannot be read (as `exists` / `all` over it). None named: `none`, the comprehension form.
 */
function inList(values: readonly string[], list: string, join: ' || ' | ' && ', none: string): string {
  return values.length === 0 ? none : `(${values.map((v) => `${JSON.stringify(v)} in ${list}`).join(join)})`;
}

function celList(values: readonly string[]): string {
  return `[${values.map((v) => JSON.stringify(v)).join(', ')}]`;
}

/** Which operations a rule (or quota) is about; one naming none is about every judged operation. */
export function matcherOf(rule: Pick<PolicyRuleConfig, 'tools' | 'prompts' | 'resources' | 'methods'>): (method: string, name: string) => boolean {
  const tools = namesOf(rule.tools);
  const prompts = namesOf(rule.prompts);
  const resources = namesOf(rule.resources);
  const methods = namesOf(rule.methods);
  if (!tools && !prompts && !resources && !methods) return () => true;
  return (method, name) =>
    (method === 'tools/call' && tools?.(name) === true) ||
    (method === 'prompts/get' && prompts?.(name) === true) ||
    (method === 'resources/read' && resources?.(name) === true) ||
    methods?.(method) === true;
}

/** Whether a name matches one of the patterns: a name without `*` by a set lookup (this runs on every call), the rest as globs. */
function namesOf(patterns: readonly string[] | undefined): ((value: string) => boolean) | undefined {
  if (!patterns) return undefined;
  const exact = new Set(patterns.filter((p) => !p.includes('*')));
  const globs = patterns.filter((p) => p.includes('*')).map(glob);
  if (globs.length === 0) return (value) => exact.has(value);
  return (value) => exact.has(value) || globs.some((p) => p.test(value));
}

/** `*` matches any run of characters (also `/`); everything else literally. */
function glob(pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
}
