import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../test/support/ports.ts';
import { cpuOf, wrapped } from './procs.ts';

export const NGINX_CANDIDATES = ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx'];

export function findNginx(): string | undefined {
  return NGINX_CANDIDATES.find((path) => existsSync(path));
}

export const NGINX_MISSING = 'nginx is not installed (Debian/Ubuntu: `sudo apt-get install -y nginx-light` or `nginx`; .ci/run installs it)';

export interface RunningNginx {
  url: string;
  /** The master's PID (its workers are its children). */
  pid: number;
  stop(): Promise<void>;
}

/**
 * nginx as the reverse proxy people already trust: one worker, proxy_pass to the backend over
 * an upstream keep-alive pool (HTTP/1.1, `Connection ""`), no auth, no buffering of responses.
 * `setHeaders` are added to every proxied request (a backend key, as a deployment would inject it).
 * Config and logs live in `dir`; runs in the foreground and is stopped by its PID.
 */
export async function startNginx(binary: string, backendUrl: string, dir: string, setHeaders: Record<string, string> = {}): Promise<RunningNginx> {
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const port = await freePort();
  const backend = new URL(backendUrl);
  const conf = `
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'logs', 'error.log')} warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  keepalive_requests 1000000;
  upstream backend {
    server ${backend.host};
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${Object.entries(setHeaders).map(([name, value]) => `      proxy_set_header ${name} "${value}";\n`).join('')}      proxy_buffering off;
    }
  }
}
`;
  const confPath = join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  const [command, args] = wrapped(binary, ['-p', dir, '-c', confPath, '-g', 'daemon off;'], { cpu: cpuOf('server') });
  const child: ChildProcess = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = once(child, 'exit');
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${stderr.trim() || readLog(dir)}`);
    try {
      const response = await fetch(`${url}/healthcheck-404`);
      await response.arrayBuffer();
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`nginx did not answer on ${url}: ${stderr.trim()}`);
      await sleep(50);
    }
  }
  return {
    url,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGQUIT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function readLog(dir: string): string {
  try {
    return readFileSync(join(dir, 'logs', 'error.log'), 'utf8').trim();
  } catch {
    return '';
  }
}
