import type { BackendConfig } from '../config/schema.ts';
import { DownstreamConsentError, type DownstreamTokens } from '../oauth/downstream-tokens.ts';
import { OAuthError } from '../oauth/errors.ts';
import { NOT_JSON, type ParsedBody } from '../http/parsed-body.ts';
import { GatewayError, JSONRPC_SERVER_ERROR } from './errors.ts';
import type { Admitted } from './gate.ts';
import { idOf, isObject } from './jsonrpc.ts';

const TOOLS_CALL = 'tools/call';
/** MCP 2025-11-25 client/elicitation §URL Elicitation Required Error. */
export const JSONRPC_URL_ELICITATION_REQUIRED = -32042;
/** MCP 2026-07-28 basic/index §_meta: the client's capabilities, on every request. */
const CLIENT_CAPABILITIES_META = 'io.modelcontextprotocol/clientCapabilities';
/** MCP 2026-07-28 patterns/mrtr §Supported Requests: the requests an InputRequiredResult may answer. */
const MRTR_METHODS = new Set(['tools/call', 'prompts/get', 'resources/read']);
/** Our key in `inputRequests` / `inputResponses` (patterns/mrtr §InputRequests). */
const CONSENT_INPUT = 'gateway-downstream-consent';
/** A retry that accepted the consent link waits this long for the user to finish it (mrtr: the server "may need to block"). */
const CONSENT_WAIT_MS = 30_000;
/** A quick look before parsing: only an `initialize` body is parsed for its capabilities. */
const INITIALIZE = Buffer.from('"initialize"');

/** Adds a backend's pushed downstream tokens to the headers of one backend request. */
export type DownstreamPush = (headers: Record<string, string>, caller: Admitted, body: ParsedBody | undefined) => Promise<void>;

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
    let message = body && (anyToolList || body.bytes.includes(INITIALIZE)) ? messageOf(body) : undefined;
    if (isObject(message) && message['method'] === 'initialize') await rememberCapabilities(tokens, caller, message);
    const tool = isObject(message) && message['method'] === TOOLS_CALL && isObject(message['params']) ? message['params']['name'] : undefined;
    for (const spec of specs) {
      if (spec.tools && !(typeof tool === 'string' && spec.tools.has(tool))) continue;
      try {
        const token = await tokens.tokenFor(caller.record.grantId, spec);
        headers[spec.header] = `Bearer ${token.accessToken}`;
      } catch (error) {
        message ??= body && messageOf(body);
        // MCP 2026-07-28 patterns/mrtr: a retry that accepted our consent link waits for the page to finish.
        if (error instanceof DownstreamConsentError && acceptedConsent(message) && (await tokens.consentCompleted(caller.record.grantId, error, CONSENT_WAIT_MS))) {
          const token = await tokens.tokenFor(caller.record.grantId, spec).catch((again: unknown) => {
            throw gatewayErrorOf(again, backend.name, message, false);
          });
          headers[spec.header] = `Bearer ${token.accessToken}`;
          continue;
        }
        const urlElicitation = error instanceof DownstreamConsentError && (await takesUrlElicitation(tokens, caller, message));
        throw gatewayErrorOf(error, backend.name, message, urlElicitation);
      }
    }
  };
}

/** The body's message, parsed once for everyone who reads it (src/http/parsed-body.ts); undefined when not JSON. */
function messageOf(body: ParsedBody): unknown {
  const message = body.message;
  return message === NOT_JSON ? undefined : message;
}

/** MCP 2025-11-25 client/elicitation §Capabilities: `elicitation.url` declared at initialize. */
async function rememberCapabilities(tokens: DownstreamTokens, caller: Admitted, message: Record<string, unknown>): Promise<void> {
  const params = isObject(message['params']) ? message['params'] : {};
  const capabilities = isObject(params['capabilities']) ? params['capabilities'] : {};
  await tokens.rememberUrlElicitation(caller.record.grantId, declaresUrlElicitation(capabilities));
}

function declaresUrlElicitation(capabilities: Record<string, unknown>): boolean {
  const elicitation = capabilities['elicitation'];
  return isObject(elicitation) && isObject(elicitation['url']);
}

/** The request's own capabilities (2026-07-28 `_meta`), else what its client declared at initialize. */
async function takesUrlElicitation(tokens: DownstreamTokens, caller: Admitted, message: unknown): Promise<'modern' | 'session' | false> {
  const capabilities = perRequestCapabilities(message);
  if (capabilities) return declaresUrlElicitation(capabilities) && isObject(message) && MRTR_METHODS.has(String(message['method'])) ? 'modern' : false;
  return (await tokens.takesUrlElicitation(caller.record.grantId)) ? 'session' : false;
}

function perRequestCapabilities(message: unknown): Record<string, unknown> | undefined {
  const params = isObject(message) && isObject(message['params']) ? message['params'] : undefined;
  const meta = params && isObject(params['_meta']) ? params['_meta'] : undefined;
  const capabilities = meta?.[CLIENT_CAPABILITIES_META];
  return isObject(capabilities) ? capabilities : undefined;
}

/** A 2026-07-28 retry whose `inputResponses` accept our consent link (patterns/mrtr §InputResponses). */
function acceptedConsent(message: unknown): boolean {
  const params = isObject(message) && isObject(message['params']) ? message['params'] : undefined;
  const responses = params && isObject(params['inputResponses']) ? params['inputResponses'] : undefined;
  const response = responses?.[CONSENT_INPUT];
  return isObject(response) && response['action'] === 'accept';
}

/**
 * What the MCP client is told when its backend's token cannot be had: a JSON-RPC error answering
 * the request (200, as a policy refusal is, so the client shows it) naming the scope the user must
 * consent to and the gateway page where to do it; 403 when the request had no id; 503 when the
 * IdP is unavailable. A client that takes URL-mode elicitations gets the link as one: the
 * URLElicitationRequiredError (2025-11-25) or an InputRequiredResult (2026-07-28, patterns/mrtr).
 */
function gatewayErrorOf(error: unknown, backendName: string, message: unknown, urlElicitation: 'modern' | 'session' | false): unknown {
  if (!(error instanceof OAuthError)) return error;
  const id = idOf(message);
  let gatewayError: GatewayError;
  if (error instanceof DownstreamConsentError) {
    const text = `Forbidden: backend ${backendName} needs a token for ${error.scope}: ${error.description}`;
    gatewayError = new GatewayError(id === null ? 403 : 200, text, JSONRPC_SERVER_ERROR, { cause: error });
    if (id !== null && urlElicitation) gatewayError.answer = elicitationAnswer(error, backendName, id, urlElicitation, text);
  } else if (error.code === 'temporarily_unavailable') {
    gatewayError = new GatewayError(503, `Service Unavailable: ${error.description}`, JSONRPC_SERVER_ERROR, { cause: error });
  } else {
    gatewayError = new GatewayError(id === null ? 403 : 200, `Forbidden: backend ${backendName} gets no token for this user: ${error.description}`, JSONRPC_SERVER_ERROR, { cause: error });
  }
  gatewayError.id = id;
  return gatewayError;
}

function elicitationAnswer(error: DownstreamConsentError, backendName: string, id: string | number, era: 'modern' | 'session', text: string): object {
  const prompt =
    error.interaction === 'consent_required'
      ? `Backend ${backendName} needs your consent to ${error.scope}. Open the link to give it, then try again.`
      : `Backend ${backendName} needs you to sign in again (for example with multi-factor authentication) for ${error.scope}. Open the link, then try again.`;
  if (era === 'session') {
    return {
      jsonrpc: '2.0',
      id,
      error: {
        code: JSONRPC_URL_ELICITATION_REQUIRED,
        message: text,
        data: { elicitations: [{ mode: 'url', elicitationId: error.link.elicitationId, url: error.link.url, message: prompt }] },
      },
    };
  }
  // 2026-07-28 client/elicitation: no elicitationId; the retry with `inputResponses` tells us the outcome.
  return {
    jsonrpc: '2.0',
    id,
    result: {
      resultType: 'input_required',
      inputRequests: { [CONSENT_INPUT]: { method: 'elicitation/create', params: { mode: 'url', url: error.link.url, message: prompt } } },
    },
  };
}
