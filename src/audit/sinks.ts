import { once } from 'node:events';
import { type FileHandle, mkdir, open, rename, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type ChainHead, lineHash } from './chain.ts';

/** Where audit lines go. `write` resolves once the lines are handed over; it may take as long as it likes. */
export interface AuditSink {
  write(lines: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

/** JSON lines on a stream (standard output by default), respecting its backpressure. */
export function streamSink(stream: NodeJS.WritableStream = process.stdout): AuditSink {
  return {
    async write(lines) {
      if (!stream.write(`${lines.join('\n')}\n`)) await once(stream, 'drain');
    },
    async close() {},
  };
}

export interface FileSinkOptions {
  path: string;
  /** Rotate before a write would take the file past this size. */
  maxBytes: number;
  /** Rotated files kept: path.1 (newest) … path.N. */
  maxFiles: number;
}

/** Bytes read from the end of an existing file to find its last line (the chain head). */
const TAIL_BYTES = 64 * 1024;

/**
 * An append-only file (0600), rotated by size: path → path.1 → … → path.maxFiles (the oldest is
 * dropped). The chain continues across rotations. Returns the head found in an existing file so a
 * restarted gateway continues its chain.
 */
export async function fileSink(options: FileSinkOptions): Promise<{ sink: AuditSink; head: ChainHead | undefined }> {
  await mkdir(dirname(options.path), { recursive: true, mode: 0o700 });
  const head = await lastHead(options.path);
  let handle: FileHandle = await open(options.path, 'a', 0o600);
  let size = (await handle.stat()).size;

  async function rotate(): Promise<void> {
    await handle.close();
    for (let i = options.maxFiles - 1; i >= 1; i--) await rename(`${options.path}.${i}`, `${options.path}.${i + 1}`).catch(() => {});
    if (options.maxFiles > 0) await rename(options.path, `${options.path}.1`);
    handle = await open(options.path, options.maxFiles > 0 ? 'a' : 'w', 0o600);
    size = 0;
  }

  return {
    head,
    sink: {
      async write(lines) {
        const text = `${lines.join('\n')}\n`;
        const bytes = Buffer.byteLength(text);
        if (size > 0 && size + bytes > options.maxBytes) await rotate();
        await handle.appendFile(text);
        size += bytes;
      },
      async close() {
        await handle.close();
      },
    },
  };
}

/** The chain head of an existing audit file: its last line's seq and hash. */
async function lastHead(path: string): Promise<ChainHead | undefined> {
  const size = await stat(path).then(
    (s) => s.size,
    () => 0,
  );
  if (size === 0) return undefined;
  const handle = await open(path, 'r');
  try {
    const length = Math.min(size, TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    const last = buffer.toString('utf8').trimEnd().split('\n').at(-1) ?? '';
    const seq = (JSON.parse(last) as { seq?: unknown }).seq;
    return typeof seq === 'number' ? { seq, hash: lineHash(last) } : undefined;
  } catch {
    // A torn or foreign last line: start a new chain (verify reports the break).
    return undefined;
  } finally {
    await handle.close();
  }
}
