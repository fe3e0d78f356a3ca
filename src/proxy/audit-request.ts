import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Audit } from '../audit/audit.ts';
import { userFields } from '../audit/events.ts';
import type { RawHandler } from '../http/app.ts';
import { onResponseClose } from '../http/raw-response.ts';
import type { Admitted } from './gate.ts';
import { header } from './respond.ts';

/** The audit record of an MCP endpoint request that no `mcp.operation` record covers (docs/security.md, Audit trail). */
const MCP_REQUEST = 'mcp.request';

interface Pending {
  caller: Admitted | undefined;
  covered: boolean;
}

/**
 * A request in flight on an audited route, on its response (set and read only when the audit is
 * on): a property, not a WeakMap entry (an ephemeron write per call, benchmark 1).
 */
const PENDING = Symbol('audit pending');
type AuditedResponse = ServerResponse & { [PENDING]?: Pending };

/**
 * `handler` (an MCP endpoint, behind its error boundary) with one `mcp.request` record for each
 * request that gets no `mcp.operation` record: refused before its operations are read (401/403 at
 * the gate, 404 session, 400 header or body mismatch, 413, 503), a GET stream (recorded when it
 * ends), a DELETE; with the HTTP status sent. The body is never read for it. Only routes of an
 * enabled audit trail are wrapped.
 */
export function auditedRequests(audit: Audit, backend: string, clientIp: (req: IncomingMessage) => string | undefined, handler: RawHandler): RawHandler {
  return (req, res) => {
    const started = performance.now();
    const state: Pending = { caller: undefined, covered: false };
    (res as AuditedResponse)[PENDING] = state;
    // Read now: once the socket is gone (a stream recorded when it ends) it has no address.
    const address = clientIp(req);
    onResponseClose(res, () => {
      if (state.covered) return;
      const url = req.url ?? '';
      const query = url.indexOf('?');
      const fields: Record<string, unknown> = {
        'event.name': MCP_REQUEST,
        ...(state.caller ? { ...userFields(state.caller.record.user, state.caller.record.userKey), 'oauth.client.id': state.caller.record.clientId } : {}),
        'mcp.backend': backend,
        'http.request.method': req.method,
        'url.path': query < 0 ? url : url.slice(0, query),
        'mcp.session.id': header(req.headers, 'mcp-session-id'),
        'mcp.protocol.version': header(req.headers, 'mcp-protocol-version'),
        'client.address': address,
      };
      // A client gone before any answer was sent has no status.
      if (res.headersSent) fields['http.response.status_code'] = res.statusCode;
      else fields['error.type'] = 'connection_closed';
      fields['gateway.duration_ms'] = Math.round((performance.now() - started) * 1000) / 1000;
      audit.record(fields as { 'event.name': string });
    });
    handler(req, res);
  };
}

/** The caller a pending request was admitted as (its record's user fields). */
export function auditCaller(res: ServerResponse, caller: Admitted): void {
  const state = (res as AuditedResponse)[PENDING];
  if (state) state.caller = caller;
}

/** The request's operations are recorded one by one (`mcp.operation`): no `mcp.request` record for it. */
export function auditCovered(res: ServerResponse): void {
  const state = (res as AuditedResponse)[PENDING];
  if (state) state.covered = true;
}
