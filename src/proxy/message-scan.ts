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

/**
 * Not read here: not one JSON object (a batch, or no JSON), or beyond the scanner's stack (deep
 * nesting; a string of millions of escapes, irregexp's backtrack stack): read it with JSON.parse.
 */
export const READ_WHOLE: unique symbol = Symbol('read whole');

/**
 * The outcome of one JSON-RPC message's text, read without building it: undefined for valid JSON
 * that is no answer (a request or notification: it has a `method`; no string or number `id`) and
 * for an object that is not valid JSON; READ_WHOLE for what it leaves to JSON.parse. What it says
 * is what `outcomeOf(JSON.parse(text))` says (src/proxy/message-scan.test.ts compares the two).
 *
 * Measured reason for not parsing: in the gateway, JSON.parse of a small SSE answer cost ~5–8 µs
 * of CPU per tool call (V8's key interning and hidden-class transition lookups for every object
 * of the result), and grows with the result, of which nothing is read (bench/RESULTS.md, session 8).
 */
export function readAnswer(text: string): AnswerOutcome | undefined | typeof READ_WHOLE {
  const members = wholeObject(text, ANSWER, ANSWER_NONE);
  if (members === READ_WHOLE || members === undefined) return members;
  if (members[2 * A_METHOD]! >= 0) return undefined;
  const id = memberValue(text, members, A_ID);
  if (typeof id !== 'string' && typeof id !== 'number') return undefined;
  const code = memberValue(text, members, A_ERROR_CODE);
  const isError = members[2 * A_IS_ERROR]!;
  return {
    id,
    errorCode: typeof code === 'number' ? code : undefined,
    isError: isError >= 0 && members[2 * A_IS_ERROR + 1]! - isError === 4 && text.startsWith('true', isError),
  };
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

/** Hands `seen` the outcome of each answer in one message's text (an SSE event's data, a JSON body: one message or a batch). */
export function eachAnswer(text: string, seen: (outcome: AnswerOutcome) => void): void {
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
  const members = wholeObject(text, REQUEST, REQUEST_NONE);
  if (members === undefined) return READ_WHOLE;
  if (members === READ_WHOLE) return members;
  const method = memberValue(text, members, R_METHOD);
  const id = memberValue(text, members, R_ID);
  const name = memberValue(text, members, R_NAME);
  const uri = memberValue(text, members, R_URI);
  return {
    method: typeof method === 'string' ? method : undefined,
    id: typeof id === 'string' || typeof id === 'number' ? id : undefined,
    name: typeof name === 'string' ? name : undefined,
    uri: typeof uri === 'string' ? uri : undefined,
    arguments: withArguments ? memberValue(text, members, R_ARGUMENTS) : undefined,
    meta: memberValue(text, members, R_META),
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

/**
 * The members a reader wants of an object, each with its slot in Members; `inner`: the members
 * wanted of its value when that is an object (read in the same pass).
 */
interface Wanted {
  name: string;
  slot: number;
  inner: readonly Wanted[] | undefined;
}

/**
 * Where the wanted members' values are, by slot: the value of slot `i` is
 * text[members[2i], members[2i + 1]), -1 when there is none. The last of duplicate members
 * counts, inner members included (as in JSON.parse).
 */
type Members = number[];

const [A_ID, A_METHOD, A_ERROR, A_ERROR_CODE, A_RESULT, A_IS_ERROR] = [0, 1, 2, 3, 4, 5];
const ANSWER: readonly Wanted[] = [
  { name: 'id', slot: A_ID, inner: undefined },
  { name: 'method', slot: A_METHOD, inner: undefined },
  { name: 'error', slot: A_ERROR, inner: [{ name: 'code', slot: A_ERROR_CODE, inner: undefined }] },
  { name: 'result', slot: A_RESULT, inner: [{ name: 'isError', slot: A_IS_ERROR, inner: undefined }] },
];
const [R_ID, R_METHOD, R_PARAMS, R_NAME, R_URI, R_ARGUMENTS, R_META] = [0, 1, 2, 3, 4, 5, 6];
const REQUEST: readonly Wanted[] = [
  { name: 'id', slot: R_ID, inner: undefined },
  { name: 'method', slot: R_METHOD, inner: undefined },
  {
    name: 'params',
    slot: R_PARAMS,
    inner: [
      { name: 'name', slot: R_NAME, inner: undefined },
      { name: 'uri', slot: R_URI, inner: undefined },
      { name: 'arguments', slot: R_ARGUMENTS, inner: undefined },
      { name: '_meta', slot: R_META, inner: undefined },
    ],
  },
];
const NOTHING: readonly Wanted[] = [];

/** Members with none of `wanted` found (copied per message: a packed array of small integers). */
function noneFound(wanted: readonly Wanted[]): readonly number[] {
  const slots = (list: readonly Wanted[]): number => list.reduce((count, one) => count + 1 + (one.inner ? slots(one.inner) : 0), 0);
  return Array.from({ length: 2 * slots(wanted) }, () => -1);
}
const ANSWER_NONE = noneFound(ANSWER);
const REQUEST_NONE = noneFound(REQUEST);

/** The wanted members of the one JSON object `text` is; undefined when it is not valid JSON. */
function wholeObject(text: string, wanted: readonly Wanted[], none: readonly number[]): Members | undefined | typeof READ_WHOLE {
  const scan = new Scan(text);
  scan.space();
  if (text.charCodeAt(scan.at) !== OPEN_BRACE) return READ_WHOLE;
  const members: Members = none.slice();
  try {
    if (!scan.object(wanted, members)) return undefined;
  } catch {
    return READ_WHOLE; // beyond the stack: deep nesting, or millions of escapes in one string (JSON.parse has no such limit)
  }
  scan.space();
  return scan.at === text.length ? members : undefined;
}

/** The (checked) value in `slot`, or undefined when there is none; a string without escapes and a number as they are. */
function memberValue(text: string, members: Members, slot: number): unknown {
  const start = members[2 * slot]!;
  if (start < 0) return undefined;
  const end = members[2 * slot + 1]!;
  const first = text.charCodeAt(start);
  if (first === QUOTE) {
    const inner = text.slice(start + 1, end - 1);
    if (!inner.includes('\\')) return inner;
  } else if (first === MINUS || (first >= DIGIT_0 && first <= DIGIT_9)) {
    // RFC 8259 §6 number, checked by the scan: Number reads it as JSON.parse does (-0, 1E400 too).
    return Number(text.slice(start, end));
  }
  return JSON.parse(text.slice(start, end));
}

/** Forgets what an earlier member of the same name noted (the last one counts). */
function forget(wanted: Wanted, members: Members): void {
  members[2 * wanted.slot] = -1;
  members[2 * wanted.slot + 1] = -1;
  if (wanted.inner) for (const inner of wanted.inner) forget(inner, members);
}

const MINUS = 0x2d;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const BACKSLASH = 0x5c;
const TAB = 0x09;
const LINE_FEED = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const BLANK = 0x20;

// RFC 8259 §7 string (no raw control characters; escapes as listed), §6 number. Sticky: each
// matches exactly at `lastIndex` (irregexp runs them natively, no per-character JS). The string's
// pattern unrolled (runs of plain characters between escapes): a backtracking entry per escape, none per character.
// biome-ignore lint/suspicious/noControlCharactersInRegex: RFC 8259 §7 excludes U+0000–U+001F from strings.
const STRING = /"[^"\\\u0000-\u001f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\u0000-\u001f]*)*"/y;
// biome-ignore lint/suspicious/noControlCharactersInRegex: as STRING, without escapes.
const PLAIN_STRING = /"[^"\\\u0000-\u001f]*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
/** Strings up to this long are read in a loop (cheaper than a pattern's call), longer ones by the patterns. */
const SHORT_STRING = 64;
const PLAIN = 1;
const ESCAPED = 2;
const NO_STRING = 0;

/** The one of `wanted` whose name text[start, end) is, without copying it. */
function plainName(text: string, start: number, end: number, wanted: readonly Wanted[]): Wanted | undefined {
  for (const one of wanted) if (one.name.length === end - start && text.startsWith(one.name, start)) return one;
  return undefined;
}

/** The one of `wanted` whose name the (checked) escaped name `quoted` is. */
function escapedName(quoted: string, wanted: readonly Wanted[]): Wanted | undefined {
  const name = JSON.parse(quoted) as string;
  return wanted.find((one) => one.name === name);
}

/** A cursor over JSON text (RFC 8259) that checks values and skips them without building them. */
class Scan {
  readonly text: string;
  at: number;

  constructor(text: string) {
    this.text = text;
    this.at = 0;
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
   * Skips the object at the cursor (a `{`), noting in `members` where the values of the `wanted`
   * members are (a name with escapes is decoded first); false if it is not valid JSON.
   */
  object(wanted: readonly Wanted[], members: Members): boolean {
    const text = this.text;
    this.at++;
    this.space();
    if (text.charCodeAt(this.at) === CLOSE_BRACE) {
      this.at++;
      return true;
    }
    for (;;) {
      const keyStart = this.at;
      const key = this.string();
      if (key === NO_STRING) return false;
      const keyEnd = this.at;
      this.space();
      if (text.charCodeAt(this.at) !== COLON) return false;
      this.at++;
      this.space();
      const valueStart = this.at;
      const one =
        wanted.length === 0
          ? undefined
          : key === PLAIN
            ? plainName(text, keyStart + 1, keyEnd - 1, wanted)
            : escapedName(text.slice(keyStart, keyEnd), wanted);
      if (one !== undefined) forget(one, members);
      const inner = one?.inner;
      if (!(inner !== undefined && text.charCodeAt(valueStart) === OPEN_BRACE ? this.object(inner, members) : this.value())) return false;
      if (one !== undefined) {
        members[2 * one.slot] = valueStart;
        members[2 * one.slot + 1] = this.at;
      }
      this.space();
      const next = text.charCodeAt(this.at++);
      if (next === CLOSE_BRACE) return true;
      if (next !== COMMA) return false;
      this.space();
    }
  }

  /** Skips the value at the cursor; false if there is none (RFC 8259 §3). */
  private value(): boolean {
    const text = this.text;
    const first = text.charCodeAt(this.at);
    if (first === QUOTE) return this.string() !== NO_STRING;
    if (first === OPEN_BRACE) return this.object(NOTHING, NO_MEMBERS);
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
    const text = this.text;
    if (text.charCodeAt(this.at) !== QUOTE) return NO_STRING;
    // A short string without escapes (names, most values) in a loop; the patterns for the rest.
    const limit = Math.min(text.length, this.at + SHORT_STRING);
    for (let at = this.at + 1; at < limit; at++) {
      const code = text.charCodeAt(at);
      if (code === QUOTE) {
        this.at = at + 1;
        return PLAIN;
      }
      if (code === BACKSLASH || code < 0x20) break;
    }
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

const NO_MEMBERS: Members = [];
