import type { Attributes, HrTime, Link, SpanContext } from '@opentelemetry/api';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';

/**
 * An OTLP ExportTraceServiceRequest (opentelemetry/proto/collector/trace/v1/trace_service.proto,
 * trace/v1/trace.proto) written in one pass into a Buffer, byte for byte what
 * @opentelemetry/otlp-transformer's ProtobufTraceSerializer writes (src/telemetry/otlp-spans.test.ts
 * compares the two). Measured reason for our own (bench/RESULTS.md, session 7): in the gateway at
 * 100% sampling, the library's two passes (a size estimate, then the write) with strings copied a
 * UTF-16 unit at a time cost ~40 µs per tool call (two spans), most of it in V8's inline-cache
 * misses; here strings and ids are written by Buffer#write (native UTF-8 and hex).
 */
export function serializeSpans(spans: ReadableSpan[]): Uint8Array {
  const writer = new Writer(spans.length * 512 + 1024);
  for (const [resource, scopes] of groupByResourceAndScope(spans)) {
    writer.tag(1, LEN); // ExportTraceServiceRequest.resource_spans
    const resourceSpans = writer.begin();
    writer.tag(1, LEN); // ResourceSpans.resource
    const resourceAt = writer.begin();
    if (resource.attributes) writer.attributes(resource.attributes, 1);
    writer.tag(2, VARINT); // Resource.dropped_attributes_count: not tracked by the SDK
    writer.varint(0);
    writer.end(resourceAt);
    for (const scoped of scopes.values()) {
      writer.tag(2, LEN); // ResourceSpans.scope_spans
      const scopeSpans = writer.begin();
      const scope = scoped[0]!.instrumentationScope as ScopeWithAttributes;
      writer.tag(1, LEN); // ScopeSpans.scope (InstrumentationScope)
      const scopeAt = writer.begin();
      writer.tag(1, LEN);
      writer.string(scope.name);
      if (scope.version) {
        writer.tag(2, LEN);
        writer.string(scope.version);
      }
      if (scope.attributes) writer.attributes(scope.attributes, 3);
      if (scope.droppedAttributesCount) {
        writer.tag(4, VARINT);
        writer.varint(scope.droppedAttributesCount);
      }
      writer.end(scopeAt);
      for (const span of scoped) {
        writer.tag(2, LEN); // ScopeSpans.spans
        writeSpan(writer, span);
      }
      if (scope.schemaUrl) {
        writer.tag(3, LEN);
        writer.string(scope.schemaUrl);
      }
      writer.end(scopeSpans);
    }
    if (resource.schemaUrl) {
      writer.tag(3, LEN);
      writer.string(resource.schemaUrl);
    }
    writer.end(resourceSpans);
  }
  return writer.finish();
}

type ScopeWithAttributes = ReadableSpan['instrumentationScope'] & { attributes?: Attributes; droppedAttributesCount?: number };

/** Spans by resource, then by instrumentation scope (both by identity, in order of first appearance). */
function groupByResourceAndScope(spans: ReadableSpan[]): Map<ReadableSpan['resource'], Map<object, ReadableSpan[]>> {
  const byResource = new Map<ReadableSpan['resource'], Map<object, ReadableSpan[]>>();
  for (const span of spans) {
    let byScope = byResource.get(span.resource);
    if (byScope === undefined) {
      byScope = new Map();
      byResource.set(span.resource, byScope);
    }
    const scoped = byScope.get(span.instrumentationScope);
    if (scoped === undefined) byScope.set(span.instrumentationScope, [span]);
    else scoped.push(span);
  }
  return byResource;
}

/** Span.flags (trace.proto SpanFlags): the W3C trace flags, and whether the parent is remote (known here). */
const HAS_IS_REMOTE = 0x100;
const IS_REMOTE = 0x200;

function flagsOf(traceFlags: number, isRemote: boolean | undefined): number {
  return (traceFlags & 0xff) | HAS_IS_REMOTE | (isRemote ? IS_REMOTE : 0);
}

/** trace.proto Span: fields 1–16 in order. */
function writeSpan(writer: Writer, span: ReadableSpan): void {
  const at = writer.begin();
  const context = span.spanContext();
  writeIds(writer, context);
  const parentSpanId = span.parentSpanContext?.spanId;
  if (parentSpanId) {
    writer.tag(4, LEN);
    writer.hex(parentSpanId);
  }
  writer.tag(5, LEN);
  writer.string(span.name);
  // SpanKind is one more than the API's (0 is SPAN_KIND_UNSPECIFIED).
  const kind = span.kind == null ? 0 : span.kind + 1;
  if (kind !== 0) {
    writer.tag(6, VARINT);
    writer.varint(kind);
  }
  writer.tag(7, I64);
  writer.time(span.startTime);
  writer.tag(8, I64);
  writer.time(span.endTime);
  if (span.attributes) writer.attributes(span.attributes, 9);
  writer.tag(10, VARINT);
  writer.varint(span.droppedAttributesCount);
  for (const event of span.events) {
    writer.tag(11, LEN);
    writeEvent(writer, event);
  }
  writer.tag(12, VARINT);
  writer.varint(span.droppedEventsCount);
  for (const link of span.links) {
    writer.tag(13, LEN);
    writeLink(writer, link);
  }
  writer.tag(14, VARINT);
  writer.varint(span.droppedLinksCount);
  writer.tag(15, LEN); // Status: message (2) when set, code (3) always
  const status = writer.begin();
  if (span.status.message) {
    writer.tag(2, LEN);
    writer.string(span.status.message);
  }
  writer.tag(3, VARINT);
  writer.varint(span.status.code);
  writer.end(status);
  writer.tag(16, I32);
  writer.fixed32(flagsOf(context.traceFlags, span.parentSpanContext?.isRemote));
  writer.end(at);
}

/** trace_id (1), span_id (2) and, when not empty, trace_state (3): shared by Span and Span.Link. */
function writeIds(writer: Writer, context: SpanContext): void {
  writer.tag(1, LEN);
  writer.hex(context.traceId);
  writer.tag(2, LEN);
  writer.hex(context.spanId);
  const traceState = context.traceState?.serialize();
  if (traceState) {
    writer.tag(3, LEN);
    writer.string(traceState);
  }
}

/** Span.Event: time (1), name (2), attributes (3), dropped_attributes_count (4). */
function writeEvent(writer: Writer, event: TimedEvent): void {
  const at = writer.begin();
  writer.tag(1, I64);
  writer.time(event.time);
  writer.tag(2, LEN);
  writer.string(event.name);
  if (event.attributes) writer.attributes(event.attributes, 3);
  writer.tag(4, VARINT);
  writer.varint(event.droppedAttributesCount || 0);
  writer.end(at);
}

/** Span.Link: ids (1–3), attributes (4), dropped_attributes_count (5), flags (6). */
function writeLink(writer: Writer, link: Link): void {
  const at = writer.begin();
  writeIds(writer, link.context);
  if (link.attributes) writer.attributes(link.attributes, 4);
  writer.tag(5, VARINT);
  writer.varint(link.droppedAttributesCount || 0);
  writer.tag(6, I32);
  writer.fixed32(flagsOf(link.context.traceFlags, link.context.isRemote));
  writer.end(at);
}

/** Protobuf wire types (protobuf encoding guide, Message Structure). */
const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

const TWO_32 = 0x1_0000_0000;
/** int64's range: an integer attribute outside it is a double (common.proto AnyValue). */
const INT64_MIN = -(2 ** 63);
const INT64_END = 2 ** 63;

/**
 * A growing Buffer. A nested message reserves one byte for its length and moves its bytes when
 * the length needs more (lengths are minimal varints, as every protobuf encoder writes them).
 */
class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  private room(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + bytes) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  /** A non-negative integer up to 2^53, or a negative one as int64 (two's complement, ten bytes). */
  varint(value: number): void {
    this.room(10);
    const buf = this.buf;
    let pos = this.pos;
    if (value >= 0 && value < TWO_32) {
      let v = value >>> 0;
      while (v > 0x7f) {
        buf[pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      buf[pos++] = v;
    } else {
      let low: number;
      let high: number;
      if (value >= 0) {
        low = value >>> 0;
        high = Math.floor(value / TWO_32) >>> 0;
      } else {
        const magnitude = -value;
        low = ~(magnitude >>> 0) >>> 0;
        high = ~(Math.floor(magnitude / TWO_32) >>> 0) >>> 0;
        low = (low + 1) >>> 0;
        if (low === 0) high = (high + 1) >>> 0;
      }
      while (high !== 0 || low > 0x7f) {
        buf[pos++] = (low & 0x7f) | 0x80;
        low = ((low >>> 7) | (high << 25)) >>> 0;
        high >>>= 7;
      }
      buf[pos++] = low;
    }
    this.pos = pos;
  }

  fixed32(value: number): void {
    this.room(4);
    this.pos = this.buf.writeUInt32LE(value >>> 0, this.pos);
  }

  /** HrTime [seconds, nanoseconds] as fixed64 nanoseconds, exact past 2^53 (seconds split at 2^16). */
  time([seconds, nanos]: HrTime): void {
    this.room(8);
    const low16 = seconds % 0x10000;
    const upper = Math.floor(seconds / 0x10000) * 1e9; // × 2^16 below; exact while seconds < ~5.9e11
    const rest = (upper % 0x10000) * 0x10000 + low16 * 1e9 + nanos;
    const high = Math.floor(upper / 0x10000) + Math.floor(rest / TWO_32);
    this.buf.writeUInt32LE(rest % TWO_32, this.pos);
    this.buf.writeUInt32LE(high >>> 0, this.pos + 4);
    this.pos += 8;
  }

  double(value: number): void {
    this.room(8);
    this.pos = this.buf.writeDoubleLE(value, this.pos);
  }

  /** A UTF-8 string, length first (Buffer#write: lone surrogates become U+FFFD, as TextEncoder does). */
  string(value: string): void {
    // At most 3 bytes per UTF-16 unit: under 43 units the length fits one byte, written after the string.
    const units = value.length;
    if (units < 43) {
      this.room(1 + units * 3);
      const buf = this.buf;
      const start = this.pos + 1;
      // ASCII copied here: cheaper than a native call for short strings (most keys and values).
      let i = 0;
      for (; i < units; i++) {
        const code = value.charCodeAt(i);
        if (code > 0x7f) break;
        buf[start + i] = code;
      }
      if (i === units) {
        buf[this.pos] = units;
        this.pos = start + units;
        return;
      }
      const written = buf.write(value, start, 'utf8');
      this.buf[this.pos] = written;
      this.pos += 1 + written;
      return;
    }
    const length = Buffer.byteLength(value, 'utf8');
    this.varint(length);
    this.room(length);
    this.pos += this.buf.write(value, this.pos, length, 'utf8');
  }

  /** Hex ids (trace and span ids) as their bytes. */
  hex(value: string): void {
    const length = value.length >>> 1;
    this.varint(length);
    this.room(length);
    // Ids the SDK made are valid hex; the bytes of an invalid one are zeros from where it fails (the length stays right).
    const written = this.buf.write(value, this.pos, length, 'hex');
    if (written < length) this.buf.fill(0, this.pos + written, this.pos + length);
    this.pos += length;
  }

  bytes(value: Uint8Array): void {
    this.varint(value.length);
    this.room(value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
  }

  /** Starts a nested message: one byte reserved for its length. */
  begin(): number {
    this.room(1);
    return this.pos++;
  }

  /** Ends the nested message begun at `at`: its length written there, its bytes moved when that takes more than one. */
  end(at: number): void {
    const length = this.pos - at - 1;
    if (length < 0x80) {
      this.buf[at] = length;
      return;
    }
    let size = 1;
    for (let v = length; v > 0x7f; v >>>= 7) size++;
    this.room(size - 1);
    this.buf.copy(this.buf, at + size, at + 1, this.pos);
    this.pos += size - 1;
    let v = length;
    let pos = at;
    while (v > 0x7f) {
      this.buf[pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[pos] = v;
  }

  /** Repeated KeyValue in `field`, in the attributes' own order (common.proto). */
  attributes(attributes: Attributes, field: number): void {
    for (const key in attributes) {
      if (!Object.hasOwn(attributes, key)) continue;
      this.tag(field, LEN);
      this.keyValue(key, attributes[key]);
    }
  }

  private keyValue(key: string, value: unknown): void {
    const at = this.begin();
    this.tag(1, LEN);
    this.string(key);
    this.tag(2, LEN);
    this.anyValue(value);
    this.end(at);
  }

  /** common.proto AnyValue (as a nested message); a value of no AnyValue type is an empty one. */
  private anyValue(value: unknown): void {
    const at = this.begin();
    if (typeof value === 'string') {
      this.tag(1, LEN);
      this.string(value);
    } else if (typeof value === 'boolean') {
      this.tag(2, VARINT);
      this.varint(value ? 1 : 0);
    } else if (typeof value === 'number') {
      if (Number.isInteger(value) && value >= INT64_MIN && value < INT64_END) {
        this.tag(3, VARINT);
        this.varint(value);
      } else {
        this.tag(4, I64);
        this.double(value);
      }
    } else if (value instanceof Uint8Array) {
      this.tag(7, LEN);
      this.bytes(value);
    } else if (Array.isArray(value)) {
      this.tag(5, LEN); // ArrayValue.values
      const array = this.begin();
      for (const item of value) {
        this.tag(1, LEN);
        this.anyValue(item);
      }
      this.end(array);
    } else if (typeof value === 'object' && value !== null) {
      this.tag(6, LEN); // KeyValueList.values
      const list = this.begin();
      for (const key in value) {
        if (!Object.hasOwn(value, key)) continue;
        this.tag(1, LEN);
        this.keyValue(key, (value as Record<string, unknown>)[key]);
      }
      this.end(list);
    }
    this.end(at);
  }
}
