import { StringDecoder } from 'node:string_decoder';

/**
 * Reads the events of an SSE stream as they pass (the audit trail and spans take each
 * operation's outcome from its answer). `event` gets each complete event's text while
 * `watching()` is true.
 */
export interface SseWatcher {
  watching(): boolean;
  event(text: string): void;
}

/** WHATWG HTML §9.2.6: an event ends with a blank line (lines end with CRLF, LF or CR). */
const BOUNDARY = /\r\n\r\n|\n\n|\r\r/g;

/**
 * Splits a stream's bytes into events for a watcher, nothing kept beyond the event being read.
 * A stream of one answer (`lasting` false) is read only while its watcher watches: `push` then
 * returns false and the stream is no longer read. A `lasting` stream (a legacy session's) may be
 * watched again later: its events are still delimited while nobody watches, only not handed on.
 */
export class SseEvents {
  private pending = '';
  private decoder: StringDecoder | undefined;
  private readonly watcher: SseWatcher;
  private readonly lasting: boolean;

  constructor(watcher: SseWatcher, lasting = false) {
    this.watcher = watcher;
    this.lasting = lasting;
  }

  push(chunk: Buffer): boolean {
    const watcher = this.watcher;
    if (!this.lasting && !watcher.watching()) return false;
    this.decoder ??= new StringDecoder('utf8');
    const text = this.pending === '' ? this.decoder.write(chunk) : this.pending + this.decoder.write(chunk);
    BOUNDARY.lastIndex = 0;
    let start = 0;
    for (let match = BOUNDARY.exec(text); match !== null; match = BOUNDARY.exec(text)) {
      if (watcher.watching()) watcher.event(text.slice(start, match.index));
      start = match.index + match[0].length;
    }
    this.pending = start === 0 ? text : text.slice(start);
    return true;
  }
}

/** The data of an event: its `data:` lines' values joined with LF (WHATWG HTML §9.2.6); undefined when it has none. */
export function eventData(event: string): string | undefined {
  const data: string[] = [];
  for (const line of event.split(/\r\n|\n|\r/)) if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
  return data.length > 0 ? data.join('\n') : undefined;
}
