import { connect, type Socket } from 'node:net';
import { serveWorker } from '../lib/procs.ts';

/**
 * Benchmark 3's clients: N idle SSE streams over raw sockets (a few hundred bytes each, so the
 * client side stays small), opened in batches; `expect` resolves when every stream has seen a
 * marker, with the monotonic time (process.hrtime, system-wide) the last one arrived.
 */
interface Stream {
  socket: Socket;
  tail: string;
  sawMarker: boolean;
}

let streams: Stream[] = [];
let marker: string | undefined;
let remaining = 0;
let lastArrival = 0n;
let onAll: (() => void) | undefined;

function watch(stream: Stream, chunk: string) {
  if (marker === undefined || stream.sawMarker) return;
  const text = stream.tail + chunk;
  stream.tail = text.slice(-64);
  if (text.includes(marker)) {
    stream.sawMarker = true;
    lastArrival = process.hrtime.bigint();
    if (--remaining === 0) onAll?.();
  }
}

function open(url: URL, path: string, token: string, ready: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    const stream: Stream = { socket, tail: '', sawMarker: false };
    let head = '';
    let opened = false;
    socket.setEncoding('latin1');
    socket.on('connect', () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${token}\r\nAccept: text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\r\n`,
      );
    });
    socket.on('data', (chunk: string) => {
      if (opened) return watch(stream, chunk);
      head += chunk;
      if (!head.startsWith('HTTP/1.1 200')) {
        if (head.includes('\r\n')) reject(new Error(`stream refused: ${head.split('\r\n')[0]}`));
        return;
      }
      if (head.includes(ready)) {
        opened = true;
        resolve(stream);
      }
    });
    socket.on('error', reject);
  });
}

serveWorker({}, async (message) => {
  switch (message['type']) {
    case 'open': {
      const url = new URL(String(message['url']));
      const n = Number(message['n']);
      const batch = Number(message['batch'] ?? 250);
      // GET /mcp: the backend's ": open" comment; legacy: the rewritten endpoint event.
      const ready = String(message['ready']);
      const start = performance.now();
      for (let i = 0; i < n; i += batch) {
        const size = Math.min(batch, n - i);
        const opened = await Promise.all(
          Array.from({ length: size }, () => open(url, String(message['path']), String(message['token']), ready)),
        );
        streams.push(...opened);
      }
      return { open: streams.length, ms: performance.now() - start };
    }
    case 'expect': {
      marker = String(message['marker']);
      remaining = streams.length;
      for (const s of streams) s.sawMarker = false;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${streams.length - remaining}/${streams.length} streams saw the notification`)), 30_000);
        onAll = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      return { lastArrival: lastArrival.toString() };
    }
    case 'armed':
      return {};
    case 'close': {
      for (const s of streams) s.socket.destroy();
      streams = [];
      return {};
    }
    default:
      throw new Error(`unknown message ${String(message['type'])}`);
  }
});
