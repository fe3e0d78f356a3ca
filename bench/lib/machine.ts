import { spawnSync } from 'node:child_process';
import { availableParallelism, cpus, totalmem } from 'node:os';

export interface Machine {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  nginx: string | undefined;
  redis: string | undefined;
}

/** What every result is recorded with (issue 6: cores, memory, Node version). */
export function describeMachine(): Machine {
  return {
    cores: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    nginx: versionOf('nginx', ['-v'], /nginx\/(\S+)/),
    redis: versionOf('redis-server', ['--version'], /v=(\S+)/),
  };
}

function versionOf(binary: string, args: string[], pattern: RegExp): string | undefined {
  for (const path of [`/usr/sbin/${binary}`, `/usr/bin/${binary}`, `/usr/local/bin/${binary}`]) {
    // nginx -v writes to stderr; read both.
    const run = spawnSync(path, args, { encoding: 'utf8' });
    const match = pattern.exec(`${run.stdout ?? ''}${run.stderr ?? ''}`);
    if (match) return match[1];
  }
  return undefined;
}

export function machineLine(machine: Machine): string {
  return `${machine.cores} cores (${machine.cpuModel}), ${machine.memoryGiB} GiB, Node ${machine.node}, nginx ${machine.nginx ?? 'missing'}, redis ${machine.redis ?? 'missing'}`;
}
