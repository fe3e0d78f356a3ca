import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

/**
 * CPU placement (2-core machines): the measured server side (backend, nginx, gateway) shares
 * CPU 0; load generators, clients and Redis run on CPU 1. With one core there is no pinning.
 */
export type Role = 'server' | 'client';
export function cpuOf(role: Role): string | undefined {
  const cores = availableParallelism();
  if (cores < 2) return undefined;
  return role === 'server' ? '0' : String(cores - 1);
}

/** Wraps a command with `ulimit -n` and `taskset` as asked. */
export function wrapped(command: string, args: string[], options: { cpu?: string; maxFds?: number }): [string, string[]] {
  let argv = [command, ...args];
  if (options.cpu !== undefined) argv = ['taskset', '-c', options.cpu, ...argv];
  // Raise the soft limit; where the hard limit is lower and cannot be raised (no
  // CAP_SYS_RESOURCE, e.g. in containers), settle for the hard limit.
  if (options.maxFds !== undefined) {
    argv = ['sh', '-c', `ulimit -n ${options.maxFds} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"`, 'sh', ...argv];
  }
  return [argv[0]!, argv.slice(1)];
}

export interface Worker {
  child: ChildProcess;
  pid: number;
  /** The worker's first message (its `ready` payload). */
  ready: Record<string, unknown>;
  call<T = Record<string, unknown>>(message: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

let nextId = 1;

/**
 * Runs bench/procs/<name>.ts under this Node (its own type stripping, no loader), talking over IPC: the worker sends
 * `{type:'ready', …}` first, then answers each `{id, …}` with `{id, …}` (or `{id, error}`).
 */
export async function startWorker(
  name: string,
  options: {
    role: Role;
    args?: Record<string, unknown>;
    maxFds?: number;
    nodeArgs?: string[];
    startTimeoutMs?: number;
    /** Set in the worker's environment besides this process's (benchmark 1: OTEL_* for the tracing variants). */
    env?: Record<string, string>;
  },
): Promise<Worker> {
  const file = fileURLToPath(new URL(`../procs/${name}.ts`, import.meta.url));
  const [command, args] = wrapped(
    process.execPath,
    [...(options.nodeArgs ?? []), file, JSON.stringify(options.args ?? {})],
    { cpu: cpuOf(options.role), maxFds: options.maxFds },
  );
  const child = spawn(command, args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
  });
  const pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  let exited = false;
  const exit = once(child, 'exit');
  void exit.then(() => {
    exited = true;
    for (const p of pending.values()) p.reject(new Error(`worker ${name} exited`));
    pending.clear();
  });
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker ${name} did not start`)), options.startTimeoutMs ?? 180_000);
    child.once('message', (message) => {
      clearTimeout(timer);
      resolve(message as Record<string, unknown>);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker ${name} exited with ${code} before ready`));
    });
  });
  child.on('message', (raw) => {
    const message = raw as { id?: number; error?: string };
    if (message.id === undefined) return;
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.error) waiter?.reject(new Error(message.error));
    else waiter?.resolve(message as Record<string, unknown>);
  });
  return {
    child,
    pid: child.pid!,
    ready,
    call<T>(message: Record<string, unknown>, timeoutMs = 600_000) {
      if (exited) return Promise.reject(new Error(`worker ${name} has exited`));
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`worker ${name}: no answer to ${String(message['type'])}`));
        }, timeoutMs);
        pending.set(id, {
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v as T);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        child.send({ ...message, id });
      });
    },
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** Worker side: parse argv, announce readiness, and serve calls. */
export function serveWorker(
  ready: Record<string, unknown>,
  handle: (message: Record<string, unknown>) => Promise<Record<string, unknown>>,
  onStop?: () => Promise<void>,
): void {
  process.on('message', (raw) => {
    const message = raw as Record<string, unknown> & { id: number };
    handle(message).then(
      (answer) => process.send!({ ...answer, id: message.id }),
      (error: unknown) => process.send!({ id: message.id, error: (error as Error).stack ?? String(error) }),
    );
  });
  process.once('SIGTERM', () => {
    void (onStop ?? (async () => {}))().finally(() => process.exit(0));
  });
  // The parent going away ends the worker too.
  process.once('disconnect', () => process.exit(0));
  process.send!({ type: 'ready', ...ready });
}

export function workerArgs<T>(): T {
  return JSON.parse(process.argv[2] ?? '{}') as T;
}

/** Resident set size of a process, from /proc (bytes). */
export async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb) * 1024;
}

/** The file-descriptor limit a worker can get: the hard limit (what `ulimit -Hn` says). */
export function hardFdLimit(): number {
  const out = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
  return out === 'unlimited' ? Number.POSITIVE_INFINITY : Number(out);
}

/** Whether this process may raise its hard limits (CAP_SYS_RESOURCE, capability bit 24). */
export function canRaiseFdLimit(): boolean {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const eff = /CapEff:\s+([0-9a-f]+)/.exec(status)?.[1];
    return eff !== undefined && (BigInt(`0x${eff}`) & (1n << 24n)) !== 0n;
  } catch {
    return false;
  }
}

let clockTicksPerSecond: number | undefined;

/**
 * CPU time (user + system, ms) used so far by these processes. Where the kernel keeps scheduler
 * statistics, the sum over each process's threads of /proc/<pid>/task/<tid>/schedstat's first
 * field (time on CPU, ns; Documentation/scheduler/sched-stats.rst): nanosecond precision, where
 * /proc/<pid>/stat counts clock ticks (10 ms at CLK_TCK 100, i.e. ±5 µs per call on a 2,000-call
 * run, too coarse for benchmark 1's µs differences). Otherwise utime + stime from /proc/<pid>/stat.
 */
export function cpuMsOf(pids: readonly number[]): number {
  let ms = 0;
  for (const pid of pids) ms += schedstatMsOf(pid) ?? statMsOf(pid);
  return ms;
}

function schedstatMsOf(pid: number): number | undefined {
  let threads: string[];
  try {
    threads = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  let ns = 0;
  for (const tid of threads) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch (error) {
      // A thread that ended between the listing and the read; no schedstat at all: fall back.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' && tid !== String(pid)) continue;
      return undefined;
    }
  }
  return Number.isFinite(ns) ? ns / 1e6 : undefined;
}

function statMsOf(pid: number): number {
  clockTicksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond;
}

/** A process and its direct children (nginx: the master and its workers). */
export function processTree(pid: number): number[] {
  const children = readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        return readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(pid);
      } catch {
        return false;
      }
    })
    .map(Number);
  return [pid, ...children];
}
