import { type ChildProcess, spawn } from 'node:child_process';

export interface StartedSystem {
  child: ChildProcess;
  output: () => string;
  mcpUrl: string;
  users: { login: string; password: string }[];
  /** SIGINT (Ctrl-C) and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Runs the README's start command (`npm start`) as a newcomer would, with ports and data dir as flags. */
export async function startSystem(args: string[], timeoutMs = 60_000): Promise<StartedSystem> {
  const child = spawn('npm', ['start', '--', ...args], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { ...process.env, NODE_ENV: 'development', LOG_LEVEL: 'warn' },
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
      // npm forwards signals to its child; signal the whole group like a terminal's Ctrl-C does.
      process.kill(-child.pid!, 'SIGINT');
      const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
