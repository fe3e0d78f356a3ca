import type { Readable } from 'node:stream';
import type { BackendConfig } from '../config/schema.ts';
import { DownstreamConsentError, type DownstreamTokens } from '../oauth/downstream-tokens.ts';
import { OAuthError } from '../oauth/errors.ts';
import { GatewayError, JSONRPC_SERVER_ERROR } from './errors.ts';
import type { Admitted } from './gate.ts';
import { idOf, isObject } from './jsonrpc.ts';

const TOOLS_CALL = 'tools/call';

/** Adds a backend's pushed downstream tokens to the headers of one backend request. */
export type DownstreamPush = (headers: Record<string, string>, caller: Admitted, body: Buffer | Readable | undefined) => Promise<void>;

/**
 * The push of `backend.downstreamTokens` that name a `header`: each minted from the caller's
 * upstream grant (src/oauth/downstream-tokens.ts) and sent as `Bearer <token>` (RFC 6750 §2.1
 * form, what Functions' built-in auth and Microsoft.Identity.Web read from Authorization). One
 * with `tools` goes only with a `tools/call` of those tools, read from a body the gateway holds
 * whole (a streamed body, over 64 KiB, gets none). Undefined when nothing is pushed, so such a
 * backend's calls do no work here.
 */
export function createDownstreamPush(tokens: DownstreamTokens | undefined, backend: BackendConfig): DownstreamPush | undefined {
  const pushed = (backend.downstreamTokens ?? []).filter((t) => t.header !== undefined);
  if (pushed.length === 0) return undefined;
  if (!tokens) throw new Error(`backends.${backend.name}.downstreamTokens: the upstream identity provider cannot mint downstream tokens`);
  const specs = pushed.map((t) => ({ ...t, header: t.header!.toLowerCase(), tools: t.tools && new Set(t.tools) }));
  const anyToolList = specs.some((t) => t.tools);

  return async (headers, caller, body) => {
    const message = anyToolList && Buffer.isBuffer(body) ? parsed(body) : undefined;
    const tool = isObject(message) && message['method'] === TOOLS_CALL && isObject(message['params']) ? message['params']['name'] : undefined;
    for (const spec of specs) {
      if (spec.tools && !(typeof tool === 'string' && spec.tools.has(tool))) continue;
      try {
        const token = await tokens.tokenFor(caller.record.grantId, spec);
        headers[spec.header] = `Bearer ${token.accessToken}`;
      } catch (error) {
        throw gatewayErrorOf(error, backend.name, message ?? (Buffer.isBuffer(body) ? parsed(body) : undefined));
      }
    }
  };
}

function parsed(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * What the MCP client is told when its backend's token cannot be had: a JSON-RPC error answering
 * the request (200, as a policy refusal is, so the client shows it) naming the scope the user must
 * consent to; 403 when the request had no id; 503 when the IdP is unavailable.
 */
function gatewayErrorOf(error: unknown, backendName: string, message: unknown): unknown {
  if (!(error instanceof OAuthError)) return error;
  const id = idOf(message);
  let gatewayError: GatewayError;
  if (error instanceof DownstreamConsentError) {
    gatewayError = new GatewayError(id === null ? 403 : 200, `Forbidden: backend ${backendName} needs a token for ${error.scope}: ${error.description}`, JSONRPC_SERVER_ERROR, { cause: error });
  } else if (error.code === 'temporarily_unavailable') {
    gatewayError = new GatewayError(503, `Service Unavailable: ${error.description}`, JSONRPC_SERVER_ERROR, { cause: error });
  } else {
    gatewayError = new GatewayError(id === null ? 403 : 200, `Forbidden: backend ${backendName} gets no token for this user: ${error.description}`, JSONRPC_SERVER_ERROR, { cause: error });
  }
  gatewayError.id = id;
  return gatewayError;
}
