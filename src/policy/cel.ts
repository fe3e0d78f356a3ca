import { Environment } from '@marcbachmann/cel-js';

/** What a condition sees of the user (field names as in the CEL environment below). */
export interface PolicyUser {
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
}

/** What a condition sees of the request. */
export interface PolicyRequest {
  ip: string;
  time: Date;
  /**
   * `Mcp-Param-{Name}` headers by lower-case name, decoded. Absent: unknown (not read by any
   * condition, or not trustworthy): a condition reading it fails, which counts against the caller.
   */
  params?: Readonly<Record<string, string>>;
}

/**
 * `user`, `client` and `request` are CEL message types with their own classes: cel-js reads the
 * fields of an instance as they are, where it would copy a plain object into a Map of its own on
 * every evaluation. The gateway builds them once per token (user, client) or per request; a
 * plain object (policy explain, tests) is converted as before.
 */
export class UserFacts implements PolicyUser {
  readonly oid: string;
  readonly tid: string;
  readonly sub: string;
  readonly name: string;
  readonly preferred_username: string;
  readonly email: string;
  readonly roles: readonly string[];
  readonly groups: readonly string[] | undefined;
  readonly idp: string;
  readonly kind: 'person' | 'workload';
  constructor(user: PolicyUser) {
    this.oid = user.oid;
    this.tid = user.tid;
    this.sub = user.sub;
    this.name = user.name;
    this.preferred_username = user.preferred_username;
    this.email = user.email;
    this.roles = user.roles;
    // An undefined field reads as absent (has() is false, reading it fails), as a missing key did.
    this.groups = user.groups;
    this.idp = user.idp;
    this.kind = user.kind;
  }
}

export class ClientFactsCel {
  readonly client_id: string;
  readonly name: string;
  readonly kind: string;
  constructor(client: PolicyInput['client']) {
    this.client_id = client.client_id;
    this.name = client.name;
    this.kind = client.kind;
  }
}

/**
 * How a request's address and time are read: the clock when the request is judged (as a number),
 * the address and the Date on first use only (most conditions read neither).
 */
export interface RequestSource<T> {
  ip(from: T): string;
  nowMs(): number;
}

const GIVEN: RequestSource<PolicyRequest> = { ip: (request) => request.ip, nowMs: () => Number.NaN };

export class RequestFacts implements PolicyRequest {
  readonly params: Readonly<Record<string, string>> | undefined;
  #from: unknown;
  #source: RequestSource<unknown>;
  #ip: string | undefined;
  #time: Date | undefined;
  readonly #atMs: number;
  constructor(from: unknown, source: RequestSource<never>, params: Readonly<Record<string, string>> | undefined) {
    this.#from = from;
    this.#source = source as RequestSource<unknown>;
    this.params = params;
    this.#atMs = source.nowMs();
  }
  static of(request: PolicyRequest): RequestFacts {
    const facts = new RequestFacts(request, GIVEN, request.params);
    facts.#time = request.time;
    return facts;
  }
  get ip(): string {
    this.#ip ??= this.#source.ip(this.#from);
    return this.#ip;
  }
  get time(): Date {
    this.#time ??= new Date(this.#atMs);
    return this.#time;
  }
}

/**
 * The CEL environment every policy condition is checked and evaluated in (cel-spec, "Environment"):
 * these variables and fields only, so a condition naming anything else fails the check at start.
 * The type names are those cel-js gives a variable's schema (`$user`), so messages read as before.
 */
const environment = new Environment()
  .registerType({
    name: '$user',
    ctor: UserFacts,
    convert: (user: PolicyUser) => new UserFacts(user),
    fields: {
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
  .registerVariable('user', '$user')
  .registerType({
    name: '$client',
    ctor: ClientFactsCel,
    convert: (client: PolicyInput['client']) => new ClientFactsCel(client),
    fields: { client_id: 'string', name: 'string', kind: 'string' },
  })
  .registerVariable('client', '$client')
  .registerVariable('scopes', 'list<string>')
  .registerVariable('backend', 'string')
  .registerVariable('method', 'string')
  .registerVariable('name', 'string')
  .registerVariable('arguments', 'map')
  .registerType({
    name: '$request',
    ctor: RequestFacts,
    convert: (request: PolicyRequest) => RequestFacts.of(request),
    // params: the tool parameters mirrored into `Mcp-Param-*` headers (src/policy/param-headers.ts).
    fields: { ip: 'string', time: 'google.protobuf.Timestamp', params: 'map<string, string>' },
  })
  .registerVariable('request', '$request');

/** What a condition sees (field names as in the CEL environment above). */
export interface PolicyInput {
  user: PolicyUser;
  client: { client_id: string; name: string; kind: string };
  scopes: readonly string[];
  backend: string;
  method: string;
  name: string;
  arguments: Record<string, unknown>;
  request: PolicyRequest;
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
