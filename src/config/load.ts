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
  /** Directory relative `{ file: … }` paths resolve against. */
  baseDir?: string;
  env: Record<string, string | undefined>;
}

/**
 * YAML + environment overrides → validated, frozen Config.
 * Overrides: MCPGW_LISTEN__PORT=9000 sets listen.port (segments split on `__`, snake → camel,
 * values parsed as YAML scalars). Any value written `{ env: NAME }` or `{ file: PATH }` is read
 * from the environment or a file.
 */
export function loadConfig(options: LoadOptions): Config {
  const problems: string[] = [];
  let raw: unknown = {};
  if (options.yamlText !== undefined) {
    try {
      raw = parseYaml(options.yamlText) ?? {};
    } catch (error) {
      throw new ConfigError([`(file): not valid YAML: ${(error as Error).message.split('\n')[0]}`]);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(['(file): must be a YAML mapping']);
  }
  applyEnvOverrides(raw as Record<string, unknown>, options.env);
  const resolved = resolveSources(raw, [], options, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  const parsed = configSchema.safeParse(resolved);
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error.issues));
  return deepFreeze(parsed.data);
}

function applyEnvOverrides(target: Record<string, unknown>, env: LoadOptions['env']): void {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined) continue;
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
  }
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

function formatIssues(issues: z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const message = issue.code === 'invalid_type' && issue.input === undefined ? 'required' : issue.message;
    return `${keyOf(issue.path as (string | number)[])}: ${message}`;
  });
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
