import { type ChildProcess, spawn } from 'node:child_process';

export interface StartedSystem {
  child: ChildProcess;
  output: () => string;
  mcpUrl: string;
  users: { login: string; password: string }[];
  /** Ctrl-C: SIGINT to the process group, as a terminal does; resolves true when every process is gone and the system said it stopped cleanly. */
  stop(): Promise<boolean>;
}

/** Runs the README's start command (`npm start`) as a newcomer would, with ports and data dir as flags (and `env` added to ours). */
export async function startSystem(args: string[], timeoutMs = 60_000, env: Record<string, string> = {}): Promise<StartedSystem> {
  const child = spawn('npm', ['start', '--', ...args], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { ...process.env, NODE_ENV: 'development', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + timeoutMs;
  while (!output.includes('Press Ctrl-C to stop.')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`system did not start:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const mcpUrl = /MCP URL \(Streamable HTTP\): (\S+)/.exec(output)![1]!;
  const users = [...output.matchAll(/^ {2}(\w+)\s+password: (\S+)/gm)].map((m) => ({ login: m[1]!, password: m[2]! }));
  return {
    child,
    output: () => output,
    mcpUrl,
    users,
    async stop() {
      process.kill(-child.pid!, 'SIGINT');
      await exited;
      const deadline = Date.now() + 10_000;
      while (groupAlive(child.pid!)) {
        if (Date.now() > deadline) {
          process.kill(-child.pid!, 'SIGKILL');
          return false;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return output.includes('Stopped cleanly.');
    },
  };
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}
