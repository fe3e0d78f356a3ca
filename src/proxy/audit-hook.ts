import type { IncomingMessage, ServerResponse } from 'node:http';
import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { performance } from 'node:perf_hooks';
import { pipeline, type Readable, Transform } from 'node:stream';
import { NOT_JSON, type ParsedBody } from '../http/parsed-body.ts';
import { onResponseClose } from '../http/raw-response.ts';
import { auditArguments } from '../audit/arguments.ts';
import type { Audit, AuditEvent } from '../audit/audit.ts';
import { addUserFields } from '../audit/events.ts';
import { type AnswerOutcome, eachAnswer, outcomeOf, outlineOf, READ_WHOLE, readRequest, type RequestOutline } from './message-scan.ts';
import { auditCovered } from './audit-request.ts';
import type { Decision } from '../policy/policy.ts';
import { type BackendResponse, isEventStream, wholeBody } from './forward.ts';
import type { Admitted } from './gate.ts';
import { HEADER_VALIDATION_PROTOCOL_VERSION, isObject } from './jsonrpc.ts';
import { header } from './respond.ts';
import { SseEvents, type SseWatcher } from './sse-events.ts';
import { endOperation, injectContext, type OperationSpans, propagated, type ProxyTelemetry, startClientSpan, startServerSpan } from './telemetry-hook.ts';

/** The audit record of one MCP operation (docs/security.md, Audit trail). */
const MCP_OPERATION = 'mcp.operation';

type Id = string | number;

interface Operation {
  fields: Record<string, unknown>;
  id: Id | undefined;
  done: boolean;
  /** The message's `params._meta` (trace context in, and out to a 2026-07-28 backend). */
  meta?: unknown;
  spans?: OperationSpans;
  /** Its answer, come on a legacy session's stream before the POST's own answer was sent. */
  answer?: AnswerOutcome;
  /** Stops waiting for its answer on a legacy session's stream. */
  stopWaiting?: () => void;
}

/** The operations of one POST, each recorded once, when its answer is seen or the exchange ends. */
export interface Operations {
  /** The policy's decision on the body's `index`th message (Enforcer.screen's `judged`). */
  judged(index: number, decision: Decision): void;
  /** A JSON-RPC answer (one message or a batch) sent with `status`: the operations it answers are recorded. */
  answered(answer: unknown, status: number): void;
  /**
   * The backend's answer is read for the operations' outcomes: a whole JSON body at once; for an
   * SSE stream, the watcher its relay hands each event to (never buffered), if any is waited for.
   */
  watch(response: BackendResponse): SseWatcher | undefined;
  /**
   * The request is about to go to the backend: its exchange spans begin, and their trace context
   * goes into `headers` (and into each message's `params._meta` when the body is rewritten: a
   * 2026-07-28 request). Returns the body to send.
   */
  sending<B>(headers: Record<string, string>, body: B, backendUrl: URL): B | Buffer;
  /**
   * Runs `work` with the operation's sampled SERVER span active, so that what it calls (the Store:
   * a quota's counter, the session binding) records child spans; as is when the body is not one
   * sampled operation (a batch's Store calls belong to no single operation).
   */
  inSpan<T>(work: () => T): T;
}

/**
 * Follows the operations of a POST for the audit trail (one record each, when `audit`) and for
 * telemetry (durations; spans when a tracer exports them).
 * Starts the records of a POST's operations (JSON-RPC requests and notifications of the body;
 * responses to the server's requests are not operations). A body the gateway did not read (large
 * or of unknown length, streamed to the backend) or could not parse yields one record marked
 * `gateway.audit.body: unread | invalid`. What has no answer when the exchange ends is recorded
 * with the HTTP status sent (a notification's 202, a gateway 502/504, a client gone).
 */
export function beginOperations(
  audit: Audit | undefined,
  telemetry: ProxyTelemetry,
  req: IncomingMessage,
  res: ServerResponse,
  context: OperationsContext,
): Operations {
  return new OperationsTracker(audit, telemetry, req, res, context);
}

interface OperationsContext {
  caller: Admitted;
  backend: string;
  sessionId: string | undefined;
  /** The body, when the gateway read it whole (parsed once, shared with the policy). */
  body: ParsedBody | undefined;
  /** A policy judges the body (and so parses it): its parse is read rather than the text scanned. */
  judged: boolean;
  /** trustProxy honoured (ProxyContext.clientIp). */
  clientAddress: string | undefined;
  /** A legacy session's stream on this replica, where the answers come (HTTP+SSE). */
  answers?: SessionAnswers;
}

/** One object per POST, few closures (this runs on every tool call, benchmark 1). */
class OperationsTracker implements Operations, SseWatcher {
  private readonly audit: Audit | undefined;
  private readonly telemetry: ProxyTelemetry;
  private readonly req: IncomingMessage;
  private readonly started = performance.now();
  private sentAt: number | undefined;
  /** The body's messages by index (Enforcer.screen judges by index); holes where a message is no operation. */
  private readonly indexed: (Operation | undefined)[];
  private readonly operations: Operation[];
  /** Operations waiting for their answer, by JSON-RPC id. */
  private readonly byId = new Map<Id, Operation>();
  /** The status of the POST's own answer, once the exchange ended. */
  private closedStatus: number | undefined;
  /** The status of the backend's answer being watched. */
  private answerStatus = 0;

  constructor(audit: Audit | undefined, telemetry: ProxyTelemetry, req: IncomingMessage, res: ServerResponse, context: OperationsContext) {
    this.audit = audit;
    this.telemetry = telemetry;
    this.req = req;
    // Its operations' records stand for the request (no `mcp.request` record, audit-request.ts).
    if (audit) auditCovered(res);
    const indexed = operationsOf(context.body, context.judged, () => commonFields(req, context), audit);
    this.indexed = indexed;
    const operations: Operation[] = [];
    const tracer = telemetry.tracer;
    for (const op of indexed) {
      if (op === undefined) continue;
      operations.push(op);
      if (op.id !== undefined) this.byId.set(op.id, op);
      if (tracer !== undefined && op.fields['mcp.method.name'] !== undefined) op.spans = startServerSpan(tracer, op.fields, op.meta, req.headers);
    }
    this.operations = operations;
    // Legacy HTTP+SSE: answers come on the session's stream; each is kept until the POST's own
    // answer (202) is sent, or completes the record when that was sent first.
    const answers = context.answers;
    if (answers) {
      for (const op of operations) {
        if (op.id === undefined) continue;
        op.stopWaiting = answers.expect(op.id, (outcome) => {
          op.stopWaiting = undefined;
          if (this.closedStatus === undefined) op.answer = outcome;
          else this.finish(op, this.closedStatus, outcome);
        });
      }
    }
    onResponseClose(res, () => this.closed(res.statusCode));
  }

  inSpan<T>(work: () => T): T {
    const spans = this.operations.length === 1 ? this.operations[0]!.spans : undefined;
    if (spans === undefined || !spans.server.isRecording()) return work();
    return context.with(trace.setSpan(ROOT_CONTEXT, spans.server), work);
  }

  /** Bound: handed to Enforcer.screen as a callback. */
  readonly judged = (index: number, decision: Decision): void => {
    const op = this.indexed[index];
    if (!op) return;
    op.fields['gateway.policy.decision'] = decision.allowed ? 'allowed' : decision.missingScopes ? 'step_up' : 'denied';
    if (decision.rule !== undefined) op.fields['gateway.policy.rule'] = decision.rule;
  };

  answered(answer: unknown, status: number): void {
    for (const message of Array.isArray(answer) ? answer : [answer]) {
      const outcome = outcomeOf(message);
      if (outcome !== undefined) this.answeredWith(outcome, status);
    }
  }

  sending<B>(headers: Record<string, string>, body: B, backendUrl: URL): B | Buffer {
    this.sentAt = performance.now();
    const tracer = this.telemetry.tracer;
    if (tracer === undefined) return body;
    let first: OperationSpans | undefined;
    for (const op of this.operations) {
      if (!op.spans) continue;
      startClientSpan(tracer, op.spans, op.fields, backendUrl);
      first ??= op.spans;
    }
    if (first === undefined) return body;
    // W3C Trace Context over HTTP: one traceparent per request, the (first) operation's exchange.
    injectContext(propagated(first), headers);
    if (header(this.req.headers, 'mcp-protocol-version') !== HEADER_VALIDATION_PROTOCOL_VERSION || !Buffer.isBuffer(body)) return body;
    return withTraceMeta(body, this.operations, headers);
  }

  watch(response: BackendResponse): SseWatcher | undefined {
    if (this.byId.size === 0) return undefined;
    this.answerStatus = response.statusCode;
    // Never `response.body` of a streamed answer: that would take it off the direct relay.
    const whole = wholeBody(response);
    if (isEventStream(response.headers['content-type'])) {
      if (whole === undefined) return this;
      new SseEvents(this).push(whole);
    } else if (whole !== undefined && isJson(response.headers['content-type'])) {
      // An answer that is not JSON after all is recorded with the status when the exchange ends.
      eachAnswer(whole.toString('utf8'), (outcome) => this.answeredWith(outcome, response.statusCode));
    }
    return undefined;
  }

  /** SseWatcher: the answer's events are read until every operation with an id has its answer. */
  watching(): boolean {
    return this.byId.size > 0;
  }

  data(data: string): void {
    // Events that cannot be an answer (no id: progress and other notifications) are not read.
    if (data.includes('"id"')) eachAnswer(data, (outcome) => this.answeredWith(outcome, this.answerStatus));
  }

  private answeredWith(outcome: AnswerOutcome, status: number): void {
    const op = this.byId.get(outcome.id);
    if (op) this.finish(op, status, outcome);
  }

  private closed(status: number): void {
    this.closedStatus = status;
    for (const op of this.operations) {
      // Accepted (HTTP+SSE 202): its record waits for its answer on the session's stream, or the stream's end.
      if (op.answer === undefined && op.stopWaiting !== undefined && status === 202) continue;
      this.finish(op, status, op.answer);
    }
  }

  private finish(op: Operation, status: number, answer?: AnswerOutcome): void {
    if (op.done) return;
    op.done = true;
    op.stopWaiting?.();
    if (op.id !== undefined) this.byId.delete(op.id);
    const fields = op.fields;
    fields['http.response.status_code'] = status;
    if (answer) {
      if (answer.errorCode !== undefined) fields['rpc.jsonrpc.error_code'] = answer.errorCode;
      // MCP server/tools §Error Handling: a tool's own failure is a result with isError.
      if (fields['mcp.method.name'] === 'tools/call' && answer.isError) fields['error.type'] = 'tool_error';
    }
    const now = performance.now();
    if (fields['mcp.method.name'] !== undefined) {
      const client = this.sentAt === undefined ? undefined : (now - this.sentAt) / 1000;
      endOperation(this.telemetry, fields, op.spans, { server: (now - this.started) / 1000, client });
    }
    if (this.audit === undefined) return;
    fields['gateway.duration_ms'] = Math.round((now - this.started) * 1000) / 1000;
    if (op.spans) {
      const { traceId, spanId } = op.spans.server.spanContext();
      fields['trace.id'] = traceId;
      fields['span.id'] = spanId;
    }
    this.audit.record(fields as AuditEvent);
  }
}

/** The fields every operation of a request shares: who called, where, in which session. */
function commonFields(req: IncomingMessage, context: OperationsContext): Record<string, unknown> {
  const record = context.caller.record;
  // Every field an operation's record can get, in its line's order, in one literal: filled in place
  // (Audit.record too), so every record has one shape — adding fields one by one, and copying them
  // into a new object per record, cost more than the rest of the record (benchmark 1, a perf profile
  // of the audit gateway: hidden-class transitions and megamorphic stores). JSON skips the undefined.
  const fields: Record<string, unknown> = {
    time: undefined,
    'service.instance.id': undefined,
    'event.name': MCP_OPERATION,
    'user.id': undefined,
    'user.name': undefined,
    'user.full_name': undefined,
    'user.tenant.id': undefined,
    'oauth.client.id': record.clientId,
    'mcp.backend': context.backend,
    'mcp.session.id': context.sessionId,
    'mcp.protocol.version': header(req.headers, 'mcp-protocol-version'),
    'client.address': context.clientAddress,
    'mcp.method.name': undefined,
    'gateway.policy.decision': undefined,
    'jsonrpc.request.id': undefined,
    'gen_ai.tool.name': undefined,
    'gen_ai.tool.call.arguments': undefined,
    'gen_ai.prompt.name': undefined,
    'mcp.resource.uri': undefined,
    'gateway.audit.body': undefined,
    'gateway.policy.rule': undefined,
    'http.response.status_code': undefined,
    'rpc.jsonrpc.error_code': undefined,
    'error.type': undefined,
    'gateway.duration_ms': undefined,
    'trace.id': undefined,
    'span.id': undefined,
  };
  addUserFields(fields, record.user, record.userKey);
  return fields;
}

/** Ids waiting for their answer on one legacy session's stream beyond this are recorded with the POST's status. */
const SESSION_WAITING_MAX = 1024;

/** The answers of one legacy HTTP+SSE session, read from its stream as they pass, by request id. */
export interface SessionAnswers {
  /** The session's stream passed through as it is, its answers handed to whoever waits for their id. */
  watch(body: Readable): Readable;
  /**
   * `arrived` gets the answer to `id` when it passes (undefined if the stream ends first). Returns
   * how to stop waiting, or undefined when it cannot wait (stream ended, id already waited for, too many).
   */
  expect(id: Id, arrived: (answer: AnswerOutcome | undefined) => void): (() => void) | undefined;
  /** The stream ended: whoever still waits is told. */
  end(): void;
}

export function createSessionAnswers(): SessionAnswers {
  const waiting = new Map<Id, (answer: AnswerOutcome | undefined) => void>();
  let ended = false;
  function seen(outcome: AnswerOutcome): void {
    const arrived = waiting.get(outcome.id);
    if (arrived === undefined) return;
    waiting.delete(outcome.id);
    arrived(outcome);
  }
  return {
    watch(body) {
      const events = new SseEvents({ watching: () => waiting.size > 0, data: (data) => data.includes('"id"') && eachAnswer(data, seen) }, true);
      const inspector = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          events.push(chunk);
          callback(null, chunk);
        },
      });
      pipeline(body, inspector, () => {});
      return inspector;
    },
    expect(id, arrived) {
      if (ended || waiting.has(id) || waiting.size >= SESSION_WAITING_MAX) return undefined;
      waiting.set(id, arrived);
      return () => {
        if (waiting.get(id) === arrived) waiting.delete(id);
      };
    },
    end() {
      ended = true;
      const left = [...waiting.values()];
      waiting.clear();
      for (const arrived of left) arrived(undefined);
    },
  };
}

function operationsOf(
  body: ParsedBody | undefined,
  judged: boolean,
  common: () => Record<string, unknown>,
  audit: Audit | undefined,
): (Operation | undefined)[] {
  if (body === undefined) return [unreadOperation(common(), 'unread')];
  // A body nobody else parses (no policy; not a 2026-07-28 request, whose headers were checked
  // against it) is outlined without being parsed when it is one message (message-scan.ts).
  if (!judged && !body.parsed) {
    const outline = readRequest(body.text, audit !== undefined && audit.arguments !== 'off');
    if (outline !== READ_WHOLE) return [operationOf(outline, common, audit)];
  }
  // Shared with the policy (one parse per body): read, never changed.
  const parsed = body.message;
  if (parsed === NOT_JSON) return [unreadOperation(common(), 'invalid')];
  // Indexed as the body's messages (Enforcer.screen judges by index); holes where a message is no operation.
  return (Array.isArray(parsed) ? parsed : [parsed]).map((message) => operationOf(outlineOf(message), common, audit));
}

/** The operation of one message; undefined for a message that is none (no method: a client's answer). */
function operationOf(outline: RequestOutline, common: () => Record<string, unknown>, audit: Audit | undefined): Operation | undefined {
  const { method, id, name } = outline;
  if (method === undefined) return undefined;
  const fields = common();
  fields['mcp.method.name'] = method;
  fields['gateway.policy.decision'] = 'allowed';
  if (id !== undefined) fields['jsonrpc.request.id'] = String(id);
  // OpenTelemetry MCP semantic conventions: the operation's target by method.
  if (method === 'tools/call' && name !== undefined) {
    fields['gen_ai.tool.name'] = name;
    const args = audit && auditArguments(audit.arguments, outline.arguments, audit.redact);
    if (args !== undefined) fields['gen_ai.tool.call.arguments'] = args;
  } else if (method === 'prompts/get' && name !== undefined) {
    fields['gen_ai.prompt.name'] = name;
  } else if (method === 'resources/read' && outline.uri !== undefined) {
    fields['mcp.resource.uri'] = outline.uri;
  }
  return { fields, id, done: false, meta: outline.meta };
}

function unreadOperation(fields: Record<string, unknown>, reason: 'unread' | 'invalid'): Operation {
  fields['gateway.audit.body'] = reason;
  return { fields, id: undefined, done: false };
}

/**
 * A 2026-07-28 body with each traced request's trace context in its `params._meta` (SEP-414;
 * gen-ai/mcp.md, Context propagation), and `headers` content-length updated. The body was read
 * whole and checked (streamable-http checkMirroredHeaders): it parses.
 */
function withTraceMeta(body: Buffer, operations: Operation[], headers: Record<string, string>): Buffer {
  const parsed: unknown = JSON.parse(body.toString('utf8'));
  const messages = Array.isArray(parsed) ? parsed : [parsed];
  let traced = 0;
  for (const message of messages) {
    if (!isObject(message) || typeof message['method'] !== 'string') continue;
    const op = operations[traced++];
    if (!op?.spans) continue;
    const params = isObject(message['params']) ? message['params'] : {};
    const meta: Record<string, unknown> = isObject(params['_meta']) ? { ...params['_meta'] } : {};
    delete meta['traceparent'];
    delete meta['tracestate'];
    injectContext(propagated(op.spans), meta);
    message['params'] = { ...params, _meta: meta };
  }
  const rewritten = Buffer.from(JSON.stringify(parsed), 'utf8');
  headers['content-length'] = String(rewritten.length);
  return rewritten;
}

function isJson(type: string | undefined): boolean {
  return typeof type === 'string' && /^application\/json\b/i.test(type);
}
