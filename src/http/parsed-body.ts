/**
 * A JSON-RPC request body parsed at most once, for everyone who reads it on its way to the backend
 * (the header check of 2026-07-28 requests, the policy, src/policy/enforce.ts `screen`; the audit
 * trail and tracing, which read a body nobody else parses without parsing it, src/proxy/message-scan.ts):
 * `message` parses on first read and keeps the result. Nobody may change the parsed value (it is shared).
 */
export interface ParsedBody {
  readonly bytes: Buffer;
  /** The bytes as UTF-8 text, decoded once. */
  readonly text: string;
  /** The body's JSON value, or NOT_JSON (the backend answers it with its own parse error). */
  readonly message: unknown;
  /** Whether `message` was read already (the body parsed). */
  readonly parsed: boolean;
}

export const NOT_JSON: unique symbol = Symbol('not JSON');

export function parsedBody(bytes: Buffer): ParsedBody {
  return new LazyParsedBody(bytes);
}

class LazyParsedBody implements ParsedBody {
  readonly bytes: Buffer;
  #text: string | undefined;
  #message: unknown;
  #parsed = false;
  constructor(bytes: Buffer) {
    this.bytes = bytes;
  }
  get parsed(): boolean {
    return this.#parsed;
  }
  get text(): string {
    this.#text ??= this.bytes.toString('utf8');
    return this.#text;
  }
  get message(): unknown {
    if (!this.#parsed) {
      this.#parsed = true;
      try {
        this.#message = JSON.parse(this.text);
      } catch {
        this.#message = NOT_JSON;
      }
    }
    return this.#message;
  }
}
