import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { configSchema, type RawConfig } from './schema.ts';

export type Config = Readonly<RawConfig>;

/** One line per problem, each naming its key: `upstream.entra.tenantId: required`. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.join('\n')}`);
    this.problems = problems;
    this.name = 'ConfigError';
  }
}

const ENV_PREFIX = 'MCPGW_';

export interface LoadOptions {
  /** YAML text of the config file (undefined: environment only). */
  yamlText?: string;
  /** The config file's name, for error messages (`gateway.yaml:3:5: not valid YAML: …`). */
  fileName?: string;
  /** Directory relative `{ file: … }` paths resolve against. */
  baseDir?: string;
  env: Record<string, string | undefined>;
}

/**
 * YAML + environment overrides → validated, frozen Config.
 * Overrides: MCPGW_LISTEN__PORT=9000 sets listen.port (segments split on `__`, snake → camel,
 * values parsed as YAML scalars). Any value written `{ env: NAME }` or `{ file: PATH }` is read
 * from the environment or a file; a variable the file reads so is never an override, so a secret
 * may be named anything (MCPGW_COOKIE_KEY included) without colliding with a config path.
 */
export function loadConfig(options: LoadOptions): Config {
  const problems: string[] = [];
  let raw: unknown = {};
  if (options.yamlText !== undefined) {
    try {
      raw = parseYaml(options.yamlText) ?? {};
    } catch (error) {
      throw new ConfigError([yamlProblem(error, options.fileName)]);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError([`${options.fileName ?? '(file)'}: must be a YAML mapping`]);
  }
  const overrides = applyEnvOverrides(raw as Record<string, unknown>, options.env);
  const resolved = resolveSources(raw, [], options, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  const parsed = configSchema.safeParse(resolved, { reportInput: true });
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error.issues, overrides));
  return deepFreeze(parsed.data);
}

/** `gateway.yaml:3:1: not valid YAML: Flow sequence … must end with a ]` (line and column from the parser). */
function yamlProblem(error: unknown, fileName: string | undefined): string {
  const message = (error as Error).message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  const position = (error as { linePos?: { line: number; col: number }[] }).linePos?.[0];
  return `${fileName ?? '(file)'}${position ? `:${position.line}:${position.col}` : ''}: not valid YAML: ${message}`;
}

/** The environment variable behind each overridden config path (for messages). */
type Overrides = Map<string, string>;

function applyEnvOverrides(target: Record<string, unknown>, env: LoadOptions['env']): Overrides {
  const overrides: Overrides = new Map();
  const secretSources = envReferences(target);
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined || secretSources.has(name)) continue;
    const path = name
      .slice(ENV_PREFIX.length)
      .split('__')
      .map((segment) => segment.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()));
    let node: Record<string, unknown> = target;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      if (typeof next !== 'object' || next === null) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[path.at(-1)!] = parseScalar(value);
    overrides.set(path.join('.'), name);
  }
  return overrides;
}

/** Every NAME the file reads as `{ env: NAME }`. */
function envReferences(node: unknown, found = new Set<string>()): Set<string> {
  if (typeof node !== 'object' || node === null) return found;
  const entries = Object.entries(node);
  if (entries.length === 1 && entries[0]![0] === 'env' && typeof entries[0]![1] === 'string') found.add(entries[0]![1]);
  for (const [, child] of entries) envReferences(child, found);
  return found;
}

function parseScalar(value: string): unknown {
  try {
    const parsed: unknown = parseYaml(value);
    return parsed === null ? value : parsed;
  } catch {
    return value;
  }
}

function resolveSources(node: unknown, path: (string | number)[], options: LoadOptions, problems: string[]): unknown {
  if (Array.isArray(node)) return node.map((item, i) => resolveSources(item, [...path, i], options, problems));
  if (typeof node !== 'object' || node === null) return node;
  const entries = Object.entries(node);
  if (entries.length === 1) {
    const [kind, ref] = entries[0]!;
    if (kind === 'env' && typeof ref === 'string') {
      const value = options.env[ref];
      if (value === undefined || value === '') problems.push(`${keyOf(path)}: environment variable ${ref} is not set`);
      return value;
    }
    if (kind === 'file' && typeof ref === 'string') {
      const file = isAbsolute(ref) ? ref : resolve(options.baseDir ?? '.', ref);
      try {
        return readFileSync(file, 'utf8').trim();
      } catch (error) {
        problems.push(`${keyOf(path)}: cannot read file ${file} (${(error as NodeJS.ErrnoException).code})`);
        return undefined;
      }
    }
  }
  return Object.fromEntries(entries.map(([k, v]) => [k, resolveSources(v, [...path, k], options, problems)]));
}

function formatIssues(issues: z.core.$ZodIssue[], overrides: Overrides): string[] {
  return issues.flatMap((issue) => {
    const key = keyOf(issue.path as (string | number)[]);
    if (issue.code === 'unrecognized_keys') {
      // An override naming no config key is the variable's mistake: say which variable.
      return issue.keys.map((name) => {
        const path = issue.path.length === 0 ? name : `${key}.${name}`;
        const variable = overrides.get(path);
        return variable
          ? `${variable} (environment): ${path} is not a config key (overrides are ${ENV_PREFIX}<PATH>, segments joined by __, e.g. ${ENV_PREFIX}LISTEN__PORT)`
          : `${key}: unknown key "${name}"`;
      });
    }
    if (issue.code === 'invalid_type') {
      if (issue.input === undefined) return [`${key}: required`];
      return [`${key}: expected ${issue.expected}, got ${describeInput(issue.input)}${overrides.has(key) ? ` (from ${overrides.get(key)})` : ''}`];
    }
    return [`${key}: ${issue.message}`];
  });
}

/** A wrong value's type (never the value: it may be a secret). */
function describeInput(input: unknown): string {
  if (input === null) return 'null';
  if (Array.isArray(input)) return 'a list';
  if (typeof input === 'object') return 'a mapping';
  return `a ${typeof input}`;
}

function keyOf(path: (string | number)[]): string {
  return path.length === 0 ? '(root)' : path.map(String).join('.');
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
