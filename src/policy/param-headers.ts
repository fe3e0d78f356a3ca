import type { IncomingMessage } from 'node:http';
import { decodeHeaderValue, HEADER_VALIDATION_PROTOCOL_VERSION } from '../proxy/jsonrpc.ts';

const PREFIX = 'mcp-param-';

/**
 * `request.params` of a policy condition: the `Mcp-Param-{Name}` headers (MCP 2026-07-28
 * transports/streamable-http §Custom Headers from Tool Parameters) by lower-case name (header
 * names are case-insensitive, §Case Sensitivity), each decoded per §Value Encoding.
 *
 * Undefined (unknown: every condition reading it fails) when the values cannot be relied on:
 * - the request is not of 2026-07-28, whose servers must reject a header that disagrees with the
 *   body (§Server Validation; "intermediaries that enforce policy based on mirrored headers …
 *   SHOULD reject the request rather than trusting unvalidated header values");
 * - a header is sent twice (which value the backend compares is not known) or carries a malformed
 *   `=?base64?…?=` value.
 * The gateway cannot compare them with the body itself: which argument a header mirrors is in the
 * tool's inputSchema (`x-mcp-header`), which it does not read; the backend does.
 */
export function paramHeadersOf(req: IncomingMessage): Readonly<Record<string, string>> | undefined {
  if (req.headers['mcp-protocol-version'] !== HEADER_VALIDATION_PROTOCOL_VERSION) return undefined;
  // No prototype: a parameter named `constructor` or `__proto__` is a key like any other.
  const params: Record<string, string> = Object.create(null);
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (!name.startsWith(PREFIX) || name.length === PREFIX.length) continue;
    const key = name.slice(PREFIX.length);
    if (Object.hasOwn(params, key)) return undefined;
    const value = decodeHeaderValue(raw[i + 1]!);
    if (value === undefined) return undefined;
    params[key] = value;
  }
  return params;
}
