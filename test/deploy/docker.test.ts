import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml } from 'yaml';
import { unusedGatewayVariables } from '../support/deploy-config.ts';
import { DEV_USERS } from '../support/gateway-harness.ts';
import { freePort } from '../support/ports.ts';
import { sharedSecrets } from '../support/scale-cluster.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const NODE = join(ROOT, 'node_modules/.bin/node');
/** The image's `node` user stands in as nobody here: any uid without rights on the checkout. */
const UNPRIVILEGED = 65534;
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

/** Dockerfile instructions, continuation lines joined: [['FROM', 'node:24-slim'], …]. */
function instructions(path: string): [string, string][] {
  return read(path)
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((line) => line.trim() && !line.trimStart().startsWith('#'))
    .map((line) => {
      const [keyword, ...rest] = line.trim().split(/\s+/);
      return [keyword!.toUpperCase(), rest.join(' ')];
    });
}

/** The README's SQLite path for a real deployment (its Entra example). */
function documentedSqlitePath(): string {
  const path = /store: \{ kind: sqlite, path: (\/\S+) \}/.exec(read('README.md'))?.[1];
  assert.ok(path, 'README.md documents an absolute SQLite path');
  return path;
}

describe('gateway image (Dockerfile)', () => {
  const dockerfile = instructions('Dockerfile');
  const dataDir = dirname(documentedSqlitePath());

  it('declares the documented data directory a volume, created and owned by the user it runs as, before USER', () => {
    const user = dockerfile.findIndex(([k]) => k === 'USER');
    assert.equal(dockerfile[user]![1], 'node');
    assert.ok(
      dockerfile.slice(0, user).some(([k, v]) => k === 'RUN' && v.includes(`mkdir -p ${dataDir}`) && v.includes(`chown node:node ${dataDir}`)),
      `RUN mkdir -p ${dataDir} && chown node:node ${dataDir}`,
    );
    assert.ok(dockerfile.some(([k, v]) => k === 'VOLUME' && v === dataDir));
  });

  it('copies only files that exist and that .dockerignore lets through', () => {
    const ignored = read('.dockerignore').split('\n').filter((l) => l && !l.startsWith('#'));
    for (const entry of ['node_modules', 'data', 'test-output', '.git', '.env']) assert.ok(ignored.includes(entry), `.dockerignore lists ${entry}`);
    for (const path of ['Dockerfile', 'servers/snippets/Dockerfile']) {
      for (const [k, v] of instructions(path)) {
        if (k !== 'COPY') continue;
        const sources = v.split(/\s+/).slice(0, -1);
        for (const source of sources) {
          assert.ok(existsSync(join(ROOT, source)), `${path}: COPY ${source} exists`);
          assert.ok(!ignored.includes(source.replace(/\/$/, '')), `${path}: COPY ${source} is not ignored`);
        }
      }
    }
  });

  it('the snippets image installs the server’s own dependencies, which are what it imports, at the root lock’s versions', () => {
    const snippets = JSON.parse(read('servers/snippets/package.json')) as { dependencies: Record<string, string> };
    const rootLock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { version: string }> };
    const snippetsLock = JSON.parse(read('servers/snippets/package-lock.json')) as { packages: Record<string, { version: string }> };
    const imported = new Set<string>();
    for (const file of execFileSync('git', ['ls-files', '-co', '--exclude-standard', 'servers/snippets/*.ts'], { cwd: ROOT, encoding: 'utf8' }).split('\n')) {
      if (!file || file.endsWith('.test.ts')) continue;
      // Static imports and dynamic ones (telemetry.ts loads the OpenTelemetry SDK only when configured).
      for (const [, spec] of read(file).matchAll(/(?:from |import\()'([^.][^']*)'/g)) {
        if (spec!.startsWith('node:')) continue;
        imported.add(spec!.startsWith('@') ? spec!.split('/').slice(0, 2).join('/') : spec!.split('/')[0]!);
      }
    }
    assert.deepEqual(Object.keys(snippets.dependencies).sort(), [...imported].sort());
    // Every package at a version the root lock also installs (where npm hoists it may differ).
    const rootVersions = new Set(Object.entries(rootLock.packages).map(([path, entry]) => `${path.replace(/^.*node_modules\//, '')}@${entry.version}`));
    for (const [path, entry] of Object.entries(snippetsLock.packages)) {
      const name = path.replace(/^.*node_modules\//, '');
      if (path) assert.ok(rootVersions.has(`${name}@${entry.version}`), `${name}@${entry.version} as in the root lock`);
    }
    const copies = instructions('servers/snippets/Dockerfile').filter(([k]) => k === 'COPY').map(([, v]) => v);
    assert.ok(!copies.some((v) => /(^|\s)package(-lock)?\.json/.test(v)), 'never the root package files');
  });

  describe('the entrypoint as a non-root user against the documented layout', () => {
    const root = mkdtempSync(join(tmpdir(), 'mcpgw-image-'));
    after(() => rmSync(root, { recursive: true, force: true }));
    // The image's own steps, under a temporary root: ENTRYPOINT + CMD, the data directory.
    const entrypoint = JSON.parse(dockerfile.find(([k]) => k === 'ENTRYPOINT')![1]) as string[];
    const cmd = JSON.parse(dockerfile.find(([k]) => k === 'CMD')![1]) as string[];
    const healthcheck = JSON.parse(dockerfile.find(([k]) => k === 'HEALTHCHECK')![1].replace(/^.*?CMD /, '')) as string[];

    const run = async (options: { createDataDir: boolean }) => {
      const base = mkdtempSync(join(root, 'run-'));
      // Like / in the image: root's, readable by everyone.
      chmodSync(root, 0o755);
      chmodSync(base, 0o755);
      const port = await freePort();
      const configPath = join(base, cmd.at(-1)!);
      mkdirSync(dirname(configPath), { recursive: true });
      // The base image's /var/lib: root's.
      mkdirSync(join(base, dirname(dataDir)), { recursive: true });
      if (options.createDataDir) {
        mkdirSync(join(base, dataDir), { recursive: true });
        chownSync(join(base, dataDir), UNPRIVILEGED, UNPRIVILEGED);
      }
      writeFileSync(
        configPath,
        JSON.stringify({
          publicUrl: `http://localhost:${port}`,
          listen: { host: '127.0.0.1', port },
          admin: { listen: { host: '127.0.0.1', port: 0 } },
          store: { kind: 'sqlite', path: join(base, documentedSqlitePath()) },
          secrets: sharedSecrets(),
          upstream: { dev: { port: 0, users: DEV_USERS, allowInProduction: true } },
          backends: [{ name: 'test', path: '/mcp', url: 'http://127.0.0.1:9/mcp' }],
          logLevel: 'warn',
        }),
      );
      const args = [...entrypoint.slice(1), ...cmd.slice(0, -1), configPath];
      assert.equal(entrypoint[0], 'node');
      // The checkout is root's and not writable, like /app in the image.
      const child = spawn('setpriv', [`--reuid=${UNPRIVILEGED}`, `--regid=${UNPRIVILEGED}`, '--clear-groups', NODE, ...args], {
        cwd: ROOT,
        env: { PATH: process.env['PATH'], NODE_ENV: 'production', HOME: '/nonexistent' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      return { child, port, base, stderr: () => stderr };
    };
    const healthy = async (port: number, child: ChildProcess): Promise<boolean> => {
      for (let i = 0; i < 100 && child.exitCode === null; i++) {
        if (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)) return true;
        await sleep(100);
      }
      return false;
    };

    it('serve starts as an unprivileged user, keeps its SQLite file in the data directory, and the HEALTHCHECK passes', async () => {
      const { child, port, base, stderr } = await run({ createDataDir: true });
      const exited = once(child, 'exit');
      try {
        assert.ok(await healthy(port, child), `gateway answers /healthz (stderr: ${stderr()})`);
        const db = statSync(join(base, documentedSqlitePath()));
        assert.equal(db.uid, UNPRIVILEGED);
        const probe = healthcheck.map((arg) => arg.replace('127.0.0.1:8080', `127.0.0.1:${port}`));
        assert.equal(probe[0], 'node');
        execFileSync(NODE, probe.slice(1), { stdio: 'ignore' });
      } finally {
        child.kill('SIGTERM');
        const [code] = await exited;
        assert.equal(code, 0, `exits 0 on SIGTERM (stderr: ${stderr()})`);
      }
      const closed = await freePort().then(() => port);
      assert.throws(() => execFileSync(NODE, healthcheck.slice(1).map((a) => a.replace('127.0.0.1:8080', `127.0.0.1:${closed}`)), { stdio: 'ignore' }), 'the HEALTHCHECK fails when nothing answers');
    });

    it('without the data directory the image creates, the unprivileged gateway cannot start', async () => {
      const { child, base } = await run({ createDataDir: false });
      const [code] = await once(child, 'close');
      assert.equal(code, 1);
      assert.ok(!existsSync(join(base, dataDir)));
    });
  });
});

describe('compose.yaml', () => {
  const compose = parseYaml(read('compose.yaml')) as {
    services: Record<string, { build?: string | { context: string; dockerfile?: string }; image?: string; entrypoint?: string[]; command?: string[]; volumes?: string[]; environment?: Record<string, string> }>;
    volumes: Record<string, unknown>;
  };
  /** `cp deploy/compose/env.example .env`, then compose's `${NAME:?…}` interpolation. */
  const dotEnv = Object.fromEntries(
    read('deploy/compose/env.example')
      .split('\n')
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const interpolate = (value: string) =>
    value.replace(/\$\{([A-Z_]+)(:\?[^}]*)?\}/g, (_, name: string) => {
      assert.ok(name in dotEnv, `${name} is in deploy/compose/env.example`);
      return dotEnv[name]!;
    });

  it('runs the gateway, Redis, the snippets server and Azurite, building only Dockerfiles that exist', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ['azurite', 'gateway', 'keys', 'redis', 'snippets']);
    for (const [name, service] of Object.entries(compose.services)) {
      const build = typeof service.build === 'string' ? { context: service.build } : service.build;
      if (build) assert.ok(existsSync(join(ROOT, build.context, build.dockerfile ?? 'Dockerfile')), `${name}: Dockerfile exists`);
      for (const volume of service.volumes ?? []) {
        const [source] = volume.split(':');
        if (source!.startsWith('.')) assert.ok(existsSync(join(ROOT, source!)), `${name}: ${source} exists`);
        else assert.ok(source! in compose.volumes, `${name}: volume ${source} is declared`);
      }
    }
  });

  it('the gateway’s config file and environment: every variable is read by the config, which loads with the keys the keys service makes', () => {
    const gateway = compose.services['gateway']!;
    const mount = (path: string) => {
      const volume = gateway.volumes!.map((v) => v.split(':')).find(([, target]) => path.startsWith(`${target}/`));
      assert.ok(volume, `${path} is in a mounted directory`);
      return { source: volume[0]!, target: volume[1]! };
    };
    const configPath = gateway.command!.at(-1)!;
    const { source, target } = mount(configPath);
    const yamlText = read(join(source, configPath.slice(target.length)));
    // The keys service, run for real into a stand-in for the data volume.
    const keys = compose.services['keys']!;
    const volumeRoot = mkdtempSync(join(tmpdir(), 'mcpgw-compose-'));
    try {
      const [, script, keysDir] = keys.entrypoint!;
      const dataTarget = keys.volumes!.find((v) => v.startsWith('gateway-data:'))!.split(':')[1]!;
      execFileSync(NODE, [join(ROOT, mount(script!).source, script!.slice(mount(script!).target.length)), keysDir!.replace(dataTarget, volumeRoot)]);
      execFileSync(NODE, [join(ROOT, mount(script!).source, script!.slice(mount(script!).target.length)), keysDir!.replace(dataTarget, volumeRoot)]);
      assert.ok(gateway.volumes!.includes(`gateway-data:${dataTarget}`), 'the gateway mounts the volume the keys are in');
      const env = Object.fromEntries(Object.entries(gateway.environment!).map(([k, v]) => [k, interpolate(v)]));
      assert.deepEqual(unusedGatewayVariables(yamlText.replaceAll(dataTarget, volumeRoot), env), []);
    } finally {
      rmSync(volumeRoot, { recursive: true, force: true });
    }
  });

  it('the snippets server’s environment names only variables it reads', () => {
    const readsEnv = new Set([...read('servers/snippets/main.ts').matchAll(/env\['([A-Z_]+)'\]/g)].map((m) => m[1]));
    for (const name of Object.keys(compose.services['snippets']!.environment!)) assert.ok(readsEnv.has(name), `${name} is read by servers/snippets/main.ts`);
  });
});
