/**
 * Reads the events of an SSE stream as they pass (the audit trail and spans take each
 * operation's outcome from its answer). `data` gets each complete event's data while
 * `watching()` is true.
 */
export interface SseWatcher {
  watching(): boolean;
  /** An event's data: its `data` lines' values joined with LF (WHATWG HTML §9.2.6, dispatch). */
  data(data: string): void;
}

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
/** "data" */
const DATA = [0x64, 0x61, 0x74, 0x61];

/**
 * Splits a stream's bytes into events for a watcher, line by line on the bytes (WHATWG HTML
 * §9.2.6: lines end with CRLF, LF or CR; a blank line ends an event), decoding only `data` lines
 * and keeping nothing but the line being read and the event's data so far. A stream of one
 * answer (`lasting` false) is read only while its watcher watches: `push` then returns false and
 * the stream is no longer read. A `lasting` stream (a legacy session's) may be watched again
 * later: its events are still delimited while nobody watches, only not decoded or handed on.
 */
export class SseEvents {
  private readonly watcher: SseWatcher;
  private readonly lasting: boolean;
  /** The pieces of a line not yet ended (joined once it ends: a long line in many chunks is copied once). */
  private partial: Buffer[] | undefined;
  /** The last chunk ended with CR: an LF opening the next one belongs to that line end. */
  private afterCr = false;
  /** The current event's data lines so far. */
  private dataLines: string[] = [];
  /** No line ended yet: a byte order mark may open the stream. */
  private firstLine = true;

  constructor(watcher: SseWatcher, lasting = false) {
    this.watcher = watcher;
    this.lasting = lasting;
  }

  push(chunk: Buffer): boolean {
    if (!this.lasting && !this.watcher.watching()) return false;
    let start = 0;
    if (this.afterCr && chunk.length > 0) {
      this.afterCr = false;
      if (chunk[0] === LF) start = 1;
    }
    // Line ends found by memchr (Buffer#indexOf), each searched for again only once passed.
    let lf = chunk.indexOf(LF, start);
    let cr = chunk.indexOf(CR, start);
    for (;;) {
      if (lf !== -1 && lf < start) lf = chunk.indexOf(LF, start);
      if (cr !== -1 && cr < start) cr = chunk.indexOf(CR, start);
      const end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr);
      if (end === -1) break;
      if (this.partial === undefined) {
        this.line(chunk, start, end);
      } else {
        this.partial.push(chunk.subarray(start, end));
        const line = Buffer.concat(this.partial);
        this.partial = undefined;
        this.line(line, 0, line.length);
      }
      start = end + 1;
      if (end === cr) {
        if (start === chunk.length) this.afterCr = true;
        else if (chunk[start] === LF) start++;
      }
    }
    if (start < chunk.length) {
      if (this.partial === undefined) this.partial = [chunk.subarray(start)];
      else this.partial.push(chunk.subarray(start));
    }
    return true;
  }

  private line(bytes: Buffer, start: number, end: number): void {
    if (this.firstLine) {
      // §9.2.6: one leading U+FEFF BYTE ORDER MARK of the stream is ignored.
      this.firstLine = false;
      if (end - start >= 3 && bytes[start] === 0xef && bytes[start + 1] === 0xbb && bytes[start + 2] === 0xbf) start += 3;
    }
    if (start === end) {
      // A blank line dispatches the event, if it has data.
      if (this.dataLines.length === 0) return;
      const data = this.dataLines.length === 1 ? this.dataLines[0]! : this.dataLines.join('\n');
      this.dataLines = [];
      if (this.watcher.watching()) this.watcher.data(data);
      return;
    }
    if (!isDataField(bytes, start, end) || !this.watcher.watching()) return;
    // "data" alone is the field with an empty value; after "data:" one leading space is dropped.
    let value = start + 4;
    if (value < end) value += bytes[value + 1] === SPACE && value + 1 < end ? 2 : 1;
    this.dataLines.push(bytes.toString('utf8', value, end));
  }
}

/** The line's field name is `data` (the line is "data", or starts with "data:"). */
function isDataField(bytes: Buffer, start: number, end: number): boolean {
  if (end - start < 4) return false;
  for (let i = 0; i < 4; i++) if (bytes[start + i] !== DATA[i]) return false;
  return end - start === 4 || bytes[start + 4] === COLON;
}
