import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * Ports for servers bound after the call (child processes, restarts on the same port) come from
 * below the kernel's ephemeral range: listen(0) and outgoing connections only ever take ports
 * inside it, so between our check and the real bind nothing but another freePort() can take the
 * port. Test files run two at a time (NODE_TEST_WORKER_ID 1, 2, …), each worker in its own slice;
 * within a process ports are handed out in turn, so a port is not handed out twice.
 */
const SLICES = 4;
const SLICE_SIZE = 4096;
const RANGE_START = 16384; // 16384 + 4 × 4096 = 32768, Linux's default ephemeral range start

let next: number | undefined;

function slice(): { start: number; end: number } | undefined {
  let ephemeralStart: number;
  try {
    ephemeralStart = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return undefined;
  }
  if (!(ephemeralStart >= RANGE_START + SLICES * SLICE_SIZE)) return undefined; // no room below it: let the OS pick
  const worker = Number(process.env['NODE_TEST_WORKER_ID'] ?? '1');
  const start = RANGE_START + ((Number.isInteger(worker) && worker > 0 ? worker - 1 : 0) % SLICES) * SLICE_SIZE;
  return { start, end: start + SLICE_SIZE };
}

const range = slice();

/** A loopback TCP port that is free now and that no other test worker will be given. */
export async function freePort(): Promise<number> {
  if (range === undefined) return bind(0);
  // A random start, so that separate runs on one machine rarely walk the same ports.
  next ??= range.start + Math.floor(Math.random() * SLICE_SIZE);
  for (let tries = 0; tries < SLICE_SIZE; tries++) {
    const port = next;
    next = next + 1 >= range.end ? range.start : next + 1;
    const bound = await bind(port).catch(() => 0);
    if (bound > 0) return bound;
  }
  throw new Error(`no free port in ${range.start}-${range.end - 1}`);
}

function bind(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (bound > 0 ? resolve(bound) : reject(new Error('no port assigned'))));
    });
  });
}
