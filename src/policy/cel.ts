import { Environment } from '@marcbachmann/cel-js';

/**
 * The CEL environment every policy condition is checked and evaluated in (cel-spec, "Environment"):
 * these variables and fields only, so a condition naming anything else fails the check at start.
 */
const environment = new Environment()
  .registerVariable({
    name: 'user',
    schema: {
      oid: 'string',
      tid: 'string',
      sub: 'string',
      name: 'string',
      preferred_username: 'string',
      email: 'string',
      roles: 'list<string>',
      groups: 'list<string>',
      /** The issuer of the user's identity (the upstream IdP, or an ID-JAG issuer). */
      idp: 'string',
      /** `person` or `workload`. */
      kind: 'string',
    },
  })
  .registerVariable({ name: 'client', schema: { client_id: 'string', name: 'string', kind: 'string' } })
  .registerVariable('scopes', 'list<string>')
  .registerVariable('backend', 'string')
  .registerVariable('method', 'string')
  .registerVariable('name', 'string')
  .registerVariable('arguments', 'map')
  .registerVariable({
    name: 'request',
    // params: the tool parameters mirrored into `Mcp-Param-*` headers (src/policy/param-headers.ts).
    schema: { ip: 'string', time: 'google.protobuf.Timestamp', params: 'map<string, string>' },
  });

/** What a condition sees (field names as in the CEL environment above). */
export interface PolicyInput {
  user: {
    oid: string;
    tid: string;
    sub: string;
    name: string;
    preferred_username: string;
    email: string;
    roles: readonly string[];
    /** Absent: unknown (a groups overage not resolved): a condition reading it fails, which counts against the caller. */
    groups?: readonly string[];
    idp: string;
    kind: 'person' | 'workload';
  };
  client: { client_id: string; name: string; kind: string };
  scopes: readonly string[];
  backend: string;
  method: string;
  name: string;
  arguments: Record<string, unknown>;
  request: {
    ip: string;
    time: Date;
    /**
     * `Mcp-Param-{Name}` headers by lower-case name, decoded. Absent: unknown (not read by any
     * condition, or not trustworthy): a condition reading it fails, which counts against the caller.
     */
    params?: Readonly<Record<string, string>>;
  };
}

export type Condition = (input: PolicyInput) => unknown;

/** Why an expression cannot be a condition (one line), or undefined when it type-checks to bool. */
export function celProblem(expression: string): string | undefined {
  let result: ReturnType<Environment['check']>;
  try {
    result = environment.check(expression);
  } catch (error) {
    return firstLine(error);
  }
  if (!result.valid) return firstLine(result.error);
  if (result.type !== 'bool' && result.type !== 'dyn') return `must be a bool expression, is ${result.type}`;
  return undefined;
}

/** The parsed condition, once, at start (callers checked it with celProblem first). */
export function compileCondition(expression: string): Condition {
  return environment.parse(expression) as unknown as Condition;
}

function firstLine(error: unknown): string {
  return String((error as Error | undefined)?.message ?? error).split('\n')[0]!.trim();
}
