import type { IncomingHttpHeaders } from 'node:http';

/**
 * The HTTP/1.1 wire rules (RFC 9112) backend-client.ts speaks: the request head it writes, the
 * response head and chunked body it reads. Strict: what it cannot read safely it refuses.
 */

/** Status line and fields of a response; RFC 9112 §2.3 leaves the limit to the recipient. */
export const MAX_HEAD_BYTES = 64 * 1024;
const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;

export interface RequestHeadParts {
  /** RFC 9112 §3.2.1 origin-form (path and query) and the Host value. */
  target: string;
  host: string;
  method: string;
  /** Lower-case names; content-length is only taken to frame a stream body. */
  headers: Record<string, string>;
  body?: Buffer | object;
}

/** The request head, or undefined when a method, name or value may not be sent. */
export function requestHead({ target, host, method, headers, body }: RequestHeadParts): string | undefined {
  if (!isToken(method, 0, method.length)) return undefined;
  let head = `${method} ${target} HTTP/1.1\r\nhost: ${host}\r\n`;
  let declaredLength: string | undefined;
  for (const name in headers) {
    const value = headers[name]!;
    // RFC 9110 §5.1, §5.5: a token name; a value without CTLs (a CR, LF or NUL would forge lines).
    if (!isToken(name, 0, name.length) || !isFieldValue(value)) return undefined;
    // Framing and routing are this client's (RFC 9112 §6, §3.2).
    if (name === 'content-length') declaredLength = value;
    else if (name !== 'host' && name !== 'transfer-encoding' && name !== 'connection') head += `${name}: ${value}\r\n`;
  }
  if (Buffer.isBuffer(body)) return `${head}content-length: ${body.length}\r\n\r\n`;
  if (body !== undefined) {
    if (declaredLength === undefined) return `${head}transfer-encoding: chunked\r\n\r\n`;
    return isDigits(declaredLength) ? `${head}content-length: ${declaredLength}\r\n\r\n` : undefined;
  }
  // RFC 9110 §8.6: a POST without content says so.
  return method === 'POST' || method === 'PUT' || method === 'PATCH' ? `${head}content-length: 0\r\n\r\n` : `${head}\r\n`;
}

export interface ResponseHead {
  statusCode: number;
  /** node:http style: lower-case names, repeated fields as arrays. */
  headers: IncomingHttpHeaders;
  /** RFC 9112 §9.3: HTTP/1.1 without "close" among the Connection options (§9.6). */
  persistent: boolean;
  /** `Keep-Alive: timeout=N` (RFC 2068 §19.7.1.1): how long the server keeps the socket idle. */
  keepAliveSeconds: number | undefined;
  /** The Content-Length, or -1 (chunked, or until the connection ends). */
  length: number;
  chunked: boolean;
}

/** Parses a status line and fields, each line ending in CRLF; a string says why it is refused. */
export function parseResponseHead(text: string): ResponseHead | string {
  if (!validHeadCharacters(text)) return 'control character in the response head';
  // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
  const lineEnd = text.indexOf('\r\n');
  const minor = text.charCodeAt(7);
  const statusCode = statusCodeAt(text, 9);
  if (!text.startsWith('HTTP/1.') || (minor !== 0x30 && minor !== 0x31) || text.charCodeAt(8) !== SP || statusCode < 0 || (lineEnd !== 12 && text.charCodeAt(12) !== SP)) {
    return 'malformed status line';
  }
  const fields: Record<string, string | string[]> = Object.create(null);
  for (let start = lineEnd + 2; start < text.length; ) {
    const end = text.indexOf('\r\n', start);
    const first = text.charCodeAt(start);
    // RFC 9112 §5.2: obs-fold (a line starting with whitespace) is refused, not unfolded.
    if (first === SP || first === HTAB) return 'obs-fold in the response head';
    // RFC 9112 §5.1: field-name is a token, no whitespace before the colon; OWS around the value.
    const colon = text.indexOf(':', start);
    if (colon === -1 || colon > end || !isToken(text, start, colon)) return 'malformed response header field';
    let valueStart = colon + 1;
    let valueEnd = end;
    while (valueStart < valueEnd && isOws(text.charCodeAt(valueStart))) valueStart++;
    while (valueEnd > valueStart && isOws(text.charCodeAt(valueEnd - 1))) valueEnd--;
    const name = text.slice(start, colon).toLowerCase();
    const value = text.slice(valueStart, valueEnd);
    const previous = fields[name];
    if (previous === undefined) fields[name] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else fields[name] = [previous, value];
    start = end + 2;
  }
  const headers = fields as IncomingHttpHeaders;
  const transferEncoding = headers['transfer-encoding'];
  const contentLength = headers['content-length'];
  let length = -1;
  if (transferEncoding !== undefined) {
    // RFC 9112 §6.3 rule 3: both may be smuggling; refused. Only chunked is decoded (§6.1: it is final).
    if (contentLength !== undefined) return 'both Transfer-Encoding and Content-Length';
    if (typeof transferEncoding !== 'string' || transferEncoding.toLowerCase() !== 'chunked') return 'unsupported Transfer-Encoding';
  } else if (contentLength !== undefined) {
    length = parseContentLength(contentLength);
    if (length < 0) return 'invalid Content-Length';
  }
  return {
    statusCode,
    headers,
    persistent: minor === 0x31 && !hasCloseOption(headers['connection']),
    keepAliveSeconds: keepAliveSeconds(headers['keep-alive']),
    length,
    chunked: transferEncoding !== undefined,
  };
}

// Chunked body states (RFC 9112 §7.1).
const SIZE = 0;
const SIZE_MORE = 1;
const EXT = 2;
const SIZE_LF = 3;
const DATA = 4;
const DATA_CR = 5;
const DATA_LF = 6;
const TRAILER_START = 7;
const TRAILER = 8;
const TRAILER_LF = 9;
const END_LF = 10;
/** Whitespace after the size: only ';' (an extension) may follow (RFC 9112 §7.1.1 BWS). */
const EXT_BWS = 11;

/**
 * RFC 9112 §7.1: chunk-size [ chunk-ext ] CRLF data CRLF …, last-chunk, trailer-section, CRLF;
 * across any packet boundaries. Data is handed out as slices of the input, never copied.
 */
export class ChunkedDecoder {
  private state = SIZE;
  private remaining = 0;
  private lineBytes = 0;
  /** Set when the body broke the framing. */
  error: string | undefined;
  done = false;

  reset(): void {
    this.state = SIZE;
    this.remaining = 0;
    this.lineBytes = 0;
    this.error = undefined;
    this.done = false;
  }

  /**
   * Decodes from `start`; returns where it stopped: at the end of the body (`done`), at a
   * framing error (`error`), when `deliver` returns false, or at the end of `chunk`.
   */
  read(chunk: Buffer, start: number, deliver: (data: Buffer) => boolean): number {
    let offset = start;
    while (offset < chunk.length) {
      if (this.state === DATA) {
        const n = Math.min(chunk.length - offset, this.remaining);
        const more = deliver(chunk.subarray(offset, offset + n));
        offset += n;
        this.remaining -= n;
        if (this.remaining === 0) this.state = DATA_CR;
        if (!more) return offset;
        continue;
      }
      const c = chunk[offset++]!;
      switch (this.state) {
        case SIZE:
        case SIZE_MORE: {
          const digit = hexValue(c);
          if (digit >= 0) {
            // 13 hex digits stay below 2^53.
            if (++this.lineBytes > 13) return this.fail('chunk size too large', offset);
            this.remaining = this.remaining * 16 + digit;
            this.state = SIZE_MORE;
          } else if (this.state === SIZE) return this.fail('missing chunk size', offset);
          else if (c === CR) this.state = SIZE_LF;
          // RFC 9112 §7.1.1: chunk extensions (after optional whitespace, then ';') are ignored.
          else if (c === 0x3b) this.state = EXT;
          else if (c === SP || c === HTAB) this.state = EXT_BWS;
          else return this.fail('malformed chunk size', offset);
          break;
        }
        case EXT_BWS:
          if (c === 0x3b) this.state = EXT;
          else if ((c !== SP && c !== HTAB) || ++this.lineBytes > 4096) return this.fail('malformed chunk extension', offset);
          break;
        case EXT:
          if (c === CR) this.state = SIZE_LF;
          else if ((c < 0x20 && c !== HTAB) || c === 0x7f || ++this.lineBytes > 4096) return this.fail('malformed chunk extension', offset);
          break;
        case SIZE_LF:
          if (c !== LF) return this.fail('chunk size line without CRLF', offset);
          this.lineBytes = 0;
          this.state = this.remaining === 0 ? TRAILER_START : DATA;
          break;
        case DATA_CR:
          if (c !== CR) return this.fail('chunk data longer than its size', offset);
          this.state = DATA_LF;
          break;
        case DATA_LF:
          if (c !== LF) return this.fail('chunk data without CRLF', offset);
          this.state = SIZE;
          break;
        // RFC 9112 §7.1.2: trailer fields are read and discarded (never forwarded).
        case TRAILER_START:
          if (c === CR) this.state = END_LF;
          else if (c === LF) return this.fail('malformed trailer section', offset);
          else this.state = TRAILER;
          break;
        case TRAILER:
          if (c === CR) this.state = TRAILER_LF;
          else if (c === LF || ++this.lineBytes > MAX_HEAD_BYTES) return this.fail('malformed trailer section', offset);
          break;
        case TRAILER_LF:
          if (c !== LF) return this.fail('trailer line without CRLF', offset);
          this.state = TRAILER_START;
          break;
        case END_LF:
          if (c !== LF) return this.fail('chunked body without final CRLF', offset);
          this.done = true;
          return offset;
      }
    }
    return offset;
  }

  private fail(error: string, offset: number): number {
    this.error = error;
    return offset;
  }
}

/** RFC 9110 §8.6: 1*DIGIT; a list of one repeated value is that value, different values are refused. */
function parseContentLength(value: string | string[]): number {
  if (typeof value === 'string' && isDigits(value)) return Number(value);
  let length = -1;
  for (const part of (typeof value === 'string' ? value : value.join(',')).split(',')) {
    const text = part.trim();
    if (!isDigits(text) || (length >= 0 && Number(text) !== length)) return -1;
    length = Number(text);
  }
  return length;
}

function hasCloseOption(value: string | string[] | undefined): boolean {
  if (value === undefined || value === 'keep-alive') return false;
  return (typeof value === 'string' ? value : value.join(','))
    .toLowerCase()
    .split(',')
    .some((option) => option.trim() === 'close');
}

/** Longest idle keep-alive honoured, whatever a server announces (and within timer range). */
const MAX_KEEP_ALIVE_SECONDS = 3600;

/** `Keep-Alive: timeout=N, max=M` (RFC 2068 §19.7.1.1): N when it is a plain number of seconds. */
function keepAliveSeconds(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  for (const parameter of value.split(',')) {
    const [name, seconds] = parameter.split('=').map((part) => part.trim());
    if (name?.toLowerCase() === 'timeout' && seconds !== undefined && /^\d{1,9}$/.test(seconds)) {
      return Math.min(Number(seconds), MAX_KEEP_ALIVE_SECONDS);
    }
  }
  return undefined;
}

/** Three digits at `at` (100-999), or -1. */
function statusCodeAt(text: string, at: number): number {
  let code = 0;
  for (let i = at; i < at + 3; i++) {
    const digit = text.charCodeAt(i) - 0x30;
    if (!(digit >= 0 && digit <= 9)) return -1;
    code = code * 10 + digit;
  }
  return code >= 100 ? code : -1;
}

/** RFC 9110 §5.5: no CTL but HTAB in a head; CR only as part of CRLF (RFC 9112 §2.2). */
function validHeadCharacters(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7f) return false;
    if (c >= 0x20 || c === HTAB) continue;
    if (c !== CR || text.charCodeAt(++i) !== LF) return false;
  }
  return true;
}

/** RFC 9110 §5.5: field-value characters; above 0xFF would not survive latin1 (U+010A → LF). */
function isFieldValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== HTAB) || c === 0x7f || c > 0xff) return false;
  }
  return true;
}

/** RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

function isToken(text: string, start: number, end: number): boolean {
  if (start === end) return false;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c > 127 || TCHAR[c] === 0) return false;
  }
  return true;
}

function isDigits(text: string): boolean {
  if (text.length === 0 || text.length > 15) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

function isOws(c: number): boolean {
  return c === SP || c === HTAB;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
