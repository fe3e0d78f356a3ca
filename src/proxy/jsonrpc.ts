import type { JsonRpcId } from './errors.ts';

/**
 * The 2026-07-28 rule that an intermediary reading the body rejects requests whose mirrored
 * headers disagree with it (the gateway's own error bodies are in errors.ts).
 */

/** The protocol revision whose requests carry Mcp-Method / Mcp-Name (SEP "HTTP header standardization"). */
export const HEADER_VALIDATION_PROTOCOL_VERSION = '2026-07-28';

/** 2026-07-28 basic/patterns/subscriptions: the request whose answer is a long-lived notification stream. */
export const SUBSCRIPTIONS_LISTEN = 'subscriptions/listen';

/**
 * Methods whose `Mcp-Name` mirrors a body field: 2026-07-28 transports/streamable-http §Standard
 * Request Headers (tools/call, prompts/get, resources/read), and the tasks extension's Streamable
 * HTTP binding (SEP-2663: `params.taskId` on tasks/get, tasks/update, tasks/cancel, so
 * intermediaries can route every request for a task to the instance holding it).
 */
const NAME_SOURCE = new Map<string, 'name' | 'uri' | 'taskId'>([
  ['tools/call', 'name'],
  ['prompts/get', 'name'],
  ['resources/read', 'uri'],
  ['tasks/get', 'taskId'],
  ['tasks/update', 'taskId'],
  ['tasks/cancel', 'taskId'],
]);

const SENTINEL = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/;

/**
 * 2026-07-28 §Value Encoding: `=?base64?…?=` (case-sensitive markers) carries the UTF-8 value in
 * Base64; anything else is the value itself. Returns undefined for a malformed sentinel.
 */
export function decodeHeaderValue(value: string): string | undefined {
  if (!value.startsWith('=?base64?') || !value.endsWith('?=')) return value;
  const match = SENTINEL.exec(value);
  if (!match) return undefined;
  return Buffer.from(match[1]!, 'base64').toString('utf8');
}

export interface MetadataHeaders {
  protocolVersion: string | undefined;
  method: string | undefined;
  name: string | undefined;
}

/**
 * 2026-07-28 §Server Validation, applied as an intermediary that reads the body: returns the
 * HeaderMismatch message, or undefined when the headers agree with the body.
 * - `Mcp-Method` is required on requests and must equal `method` (on notifications it is
 *   compared when present: "header requirements for notification POSTs are not defined").
 * - `Mcp-Name` is required for tools/call, prompts/get (`params.name`), resources/read
 *   (`params.uri`) and tasks/get, tasks/update, tasks/cancel (`params.taskId`), and must equal
 *   it after sentinel decoding; values are case-sensitive.
 * - `MCP-Protocol-Version` must equal `params._meta["io.modelcontextprotocol/protocolVersion"]`
 *   when the body carries it.
 * `Mcp-Param-*` headers are forwarded unchecked: which ones exist depends on tool schemas the
 * gateway does not read ("intermediate servers that do not recognize … MUST forward it"); policy
 * conditions may read them (src/policy/param-headers.ts), trusting the backend to compare them.
 */
export function headerMismatch(headers: MetadataHeaders, message: Record<string, unknown>): string | undefined {
  const method = typeof message['method'] === 'string' ? message['method'] : undefined;
  if (method === undefined) return undefined; // a response or garbage: the backend answers it
  const isRequest = 'id' in message;
  if (headers.method === undefined) {
    if (isRequest) return 'Header mismatch: required Mcp-Method header is missing';
  } else if (headers.method !== method) {
    return `Header mismatch: Mcp-Method header value '${headers.method}' does not match body value '${method}'`;
  }
  const params = isObject(message['params']) ? message['params'] : {};
  const source = NAME_SOURCE.get(method);
  if (source) {
    const bodyName = params[source];
    if (headers.name === undefined) return 'Header mismatch: required Mcp-Name header is missing';
    const decoded = decodeHeaderValue(headers.name);
    if (decoded === undefined) return 'Header mismatch: Mcp-Name header has a malformed base64 value';
    if (decoded !== bodyName) {
      return `Header mismatch: Mcp-Name header value '${decoded}' does not match body value '${describe(bodyName)}'`;
    }
  }
  const meta = isObject(params['_meta']) ? params['_meta'] : {};
  const bodyVersion = meta['io.modelcontextprotocol/protocolVersion'];
  if (typeof bodyVersion === 'string' && bodyVersion !== headers.protocolVersion) {
    return `Header mismatch: MCP-Protocol-Version header value '${headers.protocolVersion}' does not match body value '${bodyVersion}'`;
  }
  return undefined;
}

/** A body value, from an untrusted client, for a message: never throws (String() can, on {"toString":1}). */
function describe(value: unknown): string {
  return typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value)).slice(0, 200);
}

export function idOf(message: unknown): JsonRpcId {
  if (!isObject(message)) return null;
  const id = message['id'];
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
