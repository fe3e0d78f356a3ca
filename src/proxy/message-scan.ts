import { isObject } from './jsonrpc.ts';

/*
 * What the audit trail and the spans read of the JSON-RPC messages they watch (a request's method
 * and target, an answer's id and outcome), read from the text by a checking scanner (RFC 8259)
 * that builds only the few values it returns; JSON.parse for what it does not read (batches).
 */

/** What the audit trail and the spans keep of a JSON-RPC answer: which request it answers and how it went. */
export interface AnswerOutcome {
  id: string | number;
  /** `error.code` of an error answer (JSON-RPC 2.0 §5.1), when a number. */
  errorCode: number | undefined;
  /** A result with `isError: true`: a tool's own failure (MCP server/tools §Error Handling). */
  isError: boolean;
}

/** Not read here (not one JSON object: a batch, or no JSON; or nested too deep): read it with JSON.parse. */
export const READ_WHOLE: unique symbol = Symbol('read whole');

/**
 * The outcome of one JSON-RPC message's text, read without building it: undefined for valid JSON
 * that is no answer (a request or notification: it has a `method`; no string or number `id`) and
 * for an object that is not valid JSON; READ_WHOLE for what it leaves to JSON.parse. What it says is what
 * `outcomeOf(JSON.parse(text))` says (src/proxy/message-scan.test.ts compares the two).
 *
 * Measured reason for not parsing: in the gateway, JSON.parse of a small SSE answer cost ~5–8 µs
 * of CPU per tool call (V8's key interning and hidden-class transition lookups for every object
 * of the result), and grows with the result, of which nothing is read (bench/RESULTS.md, session 8).
 */
export function readAnswer(text: string): AnswerOutcome | undefined | typeof READ_WHOLE {
  const members = wholeObject(text, ANSWER_MEMBERS);
  if (members === READ_WHOLE || members === undefined) return members;
  if (members['method'] !== undefined) return undefined;
  const id = spanValue(text, members['id']);
  if (typeof id !== 'string' && typeof id !== 'number') return undefined;
  return { id, errorCode: errorCodeOf(text, members['error']), isError: isErrorOf(text, members['result']) };
}

/** The same outcome read from a parsed message (a batch's, the gateway's own refusals). */
export function outcomeOf(message: unknown): AnswerOutcome | undefined {
  if (!isObject(message) || 'method' in message) return undefined;
  const id = message['id'];
  if (typeof id !== 'string' && typeof id !== 'number') return undefined;
  const error = message['error'];
  const result = message['result'];
  return {
    id,
    errorCode: isObject(error) && typeof error['code'] === 'number' ? error['code'] : undefined,
    isError: isObject(result) && result['isError'] === true,
  };
}

/**
 * Hands `seen` the outcome of each answer in one message's text (an SSE event's data, a JSON
 * body: one message or a batch). Text without `"id"` holds no answer and is not read.
 */
export function eachAnswer(text: string, seen: (outcome: AnswerOutcome) => void): void {
  if (!text.includes('"id"')) return;
  const outcome = readAnswer(text);
  if (outcome !== READ_WHOLE) {
    if (outcome !== undefined) seen(outcome);
    return;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return; // not JSON: not an answer the gateway can read
  }
  for (const message of Array.isArray(parsed) ? parsed : [parsed]) {
    const found = outcomeOf(message);
    if (found !== undefined) seen(found);
  }
}

/** What the audit trail and the spans read of a request (or notification): its method and target. */
export interface RequestOutline {
  /** Undefined when the message is no request or notification (no string `method`: a client's answer). */
  method: string | undefined;
  id: string | number | undefined;
  /** `params.name` (tools/call, prompts/get) and `params.uri` (resources/read), when strings. */
  name: string | undefined;
  uri: string | undefined;
  /** `params.arguments` (only when asked for) and `params._meta`, as JSON.parse gives them. */
  arguments: unknown;
  meta: unknown;
}

/**
 * The outline of one JSON-RPC message's text, read without building it (the same measured reason
 * as readAnswer); READ_WHOLE for what it leaves to JSON.parse: not one JSON object (a batch), not
 * valid JSON, or nested too deep.
 */
export function readRequest(text: string, withArguments: boolean): RequestOutline | typeof READ_WHOLE {
  const members = wholeObject(text, REQUEST_MEMBERS);
  if (members === undefined) return READ_WHOLE;
  if (members === READ_WHOLE) return members;
  const method = spanValue(text, members['method']);
  const id = spanValue(text, members['id']);
  const paramsAt = members['params'];
  const params = paramsAt !== undefined && text.charCodeAt(paramsAt[0]) === OPEN_BRACE ? new Scan(text, paramsAt[0]).members(PARAMS_MEMBERS) : undefined;
  const name = spanValue(text, params?.['name']);
  const uri = spanValue(text, params?.['uri']);
  return {
    method: typeof method === 'string' ? method : undefined,
    id: typeof id === 'string' || typeof id === 'number' ? id : undefined,
    name: typeof name === 'string' ? name : undefined,
    uri: typeof uri === 'string' ? uri : undefined,
    arguments: withArguments ? spanValue(text, params?.['arguments']) : undefined,
    meta: spanValue(text, params?.['_meta']),
  };
}

/** The same outline read from a parsed message (a batch's). */
export function outlineOf(message: unknown): RequestOutline {
  const object = isObject(message) ? message : {};
  const params = isObject(object['params']) ? object['params'] : {};
  const { method, id } = object;
  return {
    method: typeof method === 'string' ? method : undefined,
    id: typeof id === 'string' || typeof id === 'number' ? id : undefined,
    name: typeof params['name'] === 'string' ? params['name'] : undefined,
    uri: typeof params['uri'] === 'string' ? params['uri'] : undefined,
    arguments: params['arguments'],
    meta: params['_meta'],
  };
}

/** The members named of the one JSON object `text` is; undefined when it is not valid JSON. */
function wholeObject(text: string, names: readonly string[]): Members | undefined | typeof READ_WHOLE {
  const scan = new Scan(text);
  scan.space();
  if (text.charCodeAt(scan.at) !== OPEN_BRACE) return READ_WHOLE;
  try {
    const members = scan.members(names);
    scan.space();
    return members === undefined || scan.at !== text.length ? undefined : members;
  } catch {
    return READ_WHOLE; // nested beyond the stack (JSON.parse is not recursive)
  }
}

/** A value's text: [start, end) in the message. */
type Span = [number, number];

/** The value spans of an object's members by name (the last of duplicates, as JSON.parse keeps). */
type Members = Partial<Record<string, Span>>;

const ANSWER_MEMBERS = ['id', 'method', 'error', 'result'];
const REQUEST_MEMBERS = ['id', 'method', 'params'];
const PARAMS_MEMBERS = ['name', 'uri', 'arguments', '_meta'];
const NONE: readonly string[] = [];

/** The value at `span`, or undefined when there is none. */
function spanValue(text: string, span: Span | undefined): unknown {
  return span === undefined ? undefined : JSON.parse(text.slice(span[0], span[1]));
}

const CODE = ['code'];
const IS_ERROR = ['isError'];

function errorCodeOf(text: string, span: Span | undefined): number | undefined {
  if (span === undefined || text.charCodeAt(span[0]) !== OPEN_BRACE) return undefined;
  const value = spanValue(text, new Scan(text, span[0]).members(CODE)?.['code']);
  return typeof value === 'number' ? value : undefined;
}

function isErrorOf(text: string, span: Span | undefined): boolean {
  if (span === undefined || text.charCodeAt(span[0]) !== OPEN_BRACE) return false;
  const isError = new Scan(text, span[0]).members(IS_ERROR)?.['isError'];
  return isError !== undefined && isError[1] - isError[0] === 4 && text.startsWith('true', isError[0]);
}

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;

// RFC 8259 §7 string (no raw control characters; escapes as listed), §6 number, §2 whitespace.
// Sticky: each matches exactly at `lastIndex` (irregexp runs them natively, no per-character JS).
// The string's pattern unrolled (runs of plain characters between escapes): no backtracking entry per character.
// biome-ignore lint/suspicious/noControlCharactersInRegex: RFC 8259 §7 excludes U+0000–U+001F from strings.
const STRING = /"[^"\\\u0000-\u001f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\u0000-\u001f]*)*"/y;
// biome-ignore lint/suspicious/noControlCharactersInRegex: as STRING, without escapes (most strings, every name read).
const PLAIN_STRING = /"[^"\\\u0000-\u001f]*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const TAB = 0x09;
const LINE_FEED = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const BLANK = 0x20;

const PLAIN = 1;
const ESCAPED = 2;
const NO_STRING = 0;

/** The one of `names` that text[start, end) is, without copying it. */
function plainName(text: string, start: number, end: number, names: readonly string[]): string | undefined {
  for (const name of names) if (name.length === end - start && text.startsWith(name, start)) return name;
  return undefined;
}

/** A cursor over JSON text (RFC 8259) that checks values and skips them without building them. */
class Scan {
  readonly text: string;
  at: number;

  constructor(text: string, at = 0) {
    this.text = text;
    this.at = at;
  }

  /** Skips whitespace (RFC 8259 §2: space, tab, LF, CR); a loop here, as there is rarely any. */
  space(): void {
    const text = this.text;
    let at = this.at;
    for (;;) {
      const code = text.charCodeAt(at);
      if (code !== BLANK && code !== LINE_FEED && code !== CARRIAGE_RETURN && code !== TAB) break;
      at++;
    }
    this.at = at;
  }

  /**
   * The object at the cursor (a `{`): the value spans of its members named in `names` (a name with
   * escapes is decoded first); undefined if it is not valid JSON.
   */
  members(names: readonly string[]): Members | undefined {
    const text = this.text;
    const members: Members = {};
    this.at++;
    this.space();
    if (text.charCodeAt(this.at) === CLOSE_BRACE) {
      this.at++;
      return members;
    }
    for (;;) {
      const keyStart = this.at;
      const key = this.string();
      if (key === NO_STRING) return undefined;
      const keyEnd = this.at;
      this.space();
      if (text.charCodeAt(this.at) !== COLON) return undefined;
      this.at++;
      this.space();
      const valueStart = this.at;
      if (!this.value()) return undefined;
      if (names.length > 0) {
        const name = key === PLAIN ? plainName(text, keyStart + 1, keyEnd - 1, names) : (JSON.parse(text.slice(keyStart, keyEnd)) as string);
        if (name !== undefined && names.includes(name)) members[name] = [valueStart, this.at];
      }
      this.space();
      const next = text.charCodeAt(this.at++);
      if (next === CLOSE_BRACE) return members;
      if (next !== COMMA) return undefined;
      this.space();
    }
  }

  /** Skips the value at the cursor; false if there is none (RFC 8259 §3). */
  private value(): boolean {
    const text = this.text;
    const first = text.charCodeAt(this.at);
    if (first === QUOTE) return this.string() !== NO_STRING;
    if (first === OPEN_BRACE) return this.members(NONE) !== undefined;
    if (first === OPEN_BRACKET) return this.array();
    if (text.startsWith('true', this.at)) return this.skip(4);
    if (text.startsWith('false', this.at)) return this.skip(5);
    if (text.startsWith('null', this.at)) return this.skip(4);
    return this.match(NUMBER);
  }

  private array(): boolean {
    const text = this.text;
    this.at++;
    this.space();
    if (text.charCodeAt(this.at) === CLOSE_BRACKET) {
      this.at++;
      return true;
    }
    for (;;) {
      if (!this.value()) return false;
      this.space();
      const next = text.charCodeAt(this.at++);
      if (next === CLOSE_BRACKET) return true;
      if (next !== COMMA) return false;
      this.space();
    }
  }

  /** Skips the string at the cursor: whether it had escapes, or NO_STRING when there is none. */
  private string(): typeof PLAIN | typeof ESCAPED | typeof NO_STRING {
    if (this.text.charCodeAt(this.at) !== QUOTE) return NO_STRING;
    if (this.match(PLAIN_STRING)) return PLAIN;
    return this.match(STRING) ? ESCAPED : NO_STRING;
  }

  private skip(length: number): boolean {
    this.at += length;
    return true;
  }

  private match(pattern: RegExp): boolean {
    pattern.lastIndex = this.at;
    if (!pattern.test(this.text)) return false;
    this.at = pattern.lastIndex;
    return true;
  }
}
