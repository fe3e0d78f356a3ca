import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import type { Clock } from '../../src/ports/clock.ts';
import { StoreUnavailableError } from '../../src/ports/store.ts';
import { RedisStore } from '../../src/store/redis.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { freePort } from '../support/ports.ts';
import { type RunningRedis, startRedis } from '../support/redis-server.ts';
import { describeStoreContract } from './store.contract.ts';

// Redis expires a 1 s key within 1 s (millisecond precision); the margin absorbs scheduling.
const REDIS_EXPIRY_MARGIN_MS = 250;

describeStoreContract('SqliteStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mcpgw-sqlite-'));
  const path = join(dir, 'nested', 'store.db'); // the parent directory does not exist yet
  let now = 1_700_000_000;
  const clock: Clock = { nowSeconds: () => now };
  return {
    open: async () => SqliteStore.open({ path, clock }),
    elapse: async (seconds) => {
      now += seconds;
    },
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
});

describeStoreContract('RedisStore', async () => {
  const redis = await startRedis();
  return {
    open: () => RedisStore.connect({ url: redis.url, keyPrefix: 'contract:' }),
    elapse: (seconds) => sleep(seconds * 1000 + REDIS_EXPIRY_MARGIN_MS),
    dispose: () => redis.stop(),
  };
});

describe('SqliteStore specifics', () => {
  it('works on :memory:', async () => {
    const store = SqliteStore.open({ path: ':memory:', clock: { nowSeconds: () => 1 } });
    await store.set('k', [1, 2]);
    assert.deepEqual(await store.take('k'), [1, 2]);
    await store.close();
  });

  it('creates the database, its -wal and -shm 0600 and a missing directory 0700, whatever the umask', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'mcpgw-sqlite-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'state', 'store.db');
    const umask = process.umask(0o022); // the common default: files 0644, directories 0755
    let store: SqliteStore;
    try {
      store = SqliteStore.open({ path, clock: { nowSeconds: () => 1 } });
    } finally {
      process.umask(umask);
    }
    await store.set('k', 'v'); // a write: the -wal and -shm exist now
    const mode = (file: string) => statSync(file).mode & 0o777;
    assert.equal(mode(join(dir, 'state')), 0o700);
    for (const file of [path, `${path}-wal`, `${path}-shm`]) assert.equal(mode(file), 0o600, file);
    await store.close();
  });

  it('tightens an existing database and its -wal/-shm to 0600 when opening it', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'mcpgw-sqlite-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'store.db');
    const first = SqliteStore.open({ path, clock: { nowSeconds: () => 1 } });
    await first.set('k', 'v');
    for (const file of [path, `${path}-wal`, `${path}-shm`]) chmodSync(file, 0o644);
    // A second connection while the first keeps the -wal and -shm open, as another process would.
    const second = SqliteStore.open({ path, clock: { nowSeconds: () => 1 } });
    for (const file of [path, `${path}-wal`, `${path}-shm`]) assert.equal(statSync(file).mode & 0o777, 0o600, file);
    assert.equal(await second.get('k'), 'v');
    await second.close();
    await first.close();
  });

  it('sweeps expired rows from disk, not only from reads', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mcpgw-sqlite-'));
    const path = join(dir, 'store.db');
    let now = 1_700_000_000;
    const store = SqliteStore.open({ path, clock: { nowSeconds: () => now } });
    const inspector = new DatabaseSync(path, { readOnly: true });
    const rowCount = () =>
      Number(inspector.prepare('SELECT count(*) AS n FROM kv').get()!.n) +
      Number(inspector.prepare('SELECT count(*) AS n FROM set_members').get()!.n);
    try {
      await store.set('gone', 1, 10);
      await store.addToSet('gone-set', 'm', 10);
      await store.set('kept', 2);
      now += 10;
      assert.equal(rowCount(), 3);
      store.sweepExpired();
      assert.equal(rowCount(), 1);
    } finally {
      inspector.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('SqliteStore across threads', () => {
  // Two instances in one thread never interleave (node:sqlite is synchronous);
  // worker threads hold their own connections and truly contend for the write lock.
  it('gives each key to exactly one of four concurrent takers', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mcpgw-sqlite-'));
    const path = join(dir, 'store.db');
    const clock: Clock = { nowSeconds: () => 1_700_000_000 };
    const store = SqliteStore.open({ path, clock });
    let contended = false;
    try {
      // A loaded machine may let one worker finish before the others start: race again (bounded).
      for (let attempt = 0; attempt < 5 && !contended; attempt++) {
        const keys = Array.from({ length: 2000 }, (_, i) => `code:${attempt}:${i}`);
        for (const key of keys) await store.set(key, key, 600);
        const workers = [1, 2, 3, 4].map(() => startTakerWorker(path, keys));
        try {
          // Every worker has its store open before any starts taking.
          await Promise.all(workers.map((worker) => once(worker, 'message')));
          for (const worker of workers) worker.postMessage('go');
          const perWorker = await Promise.all(workers.map(async (worker) => (await once(worker, 'message'))[0] as string[]));
          const taken = perWorker.flat();
          assert.equal(taken.length, keys.length);
          assert.deepEqual(new Set(taken), new Set(keys));
          contended = perWorker.filter((list) => list.length > 0).length > 1;
        } finally {
          await Promise.all(workers.map((worker) => worker.terminate()));
        }
      }
      assert.ok(contended, 'no contention happened in five races');
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** A worker thread that opens SqliteStore on `path`, says ready, and on 'go' takes every key. */
function startTakerWorker(path: string, keys: string[]): Worker {
  const source = `
    const { workerData, parentPort } = require('node:worker_threads');
    (async () => {
      const { SqliteStore } = await import(workerData.moduleUrl);
      const clock = { nowSeconds: () => 1_700_000_000 };
      const store = SqliteStore.open({ path: workerData.path, clock });
      parentPort.once('message', async () => {
        const taken = [];
        for (const key of workerData.keys) {
          const value = await store.take(key);
          if (value !== undefined) taken.push(value);
        }
        await store.close();
        parentPort.postMessage(taken);
      });
      parentPort.postMessage('ready');
    })();
  `;
  const moduleUrl = new URL('../../src/store/sqlite.ts', import.meta.url).href;
  const worker = new Worker(source, { eval: true, workerData: { path, keys, moduleUrl } });
  return worker; // events.once() rejects on the worker's 'error' event
}

describe('RedisStore when Redis goes away', () => {
  let redis: RunningRedis;
  let store: RedisStore;

  before(async () => {
    redis = await startRedis();
    store = await RedisStore.connect({ url: redis.url, commandTimeoutMs: 500 });
  });
  after(async () => {
    await store?.close();
    await redis?.stop();
  });

  it('fails at start with StoreUnavailableError when nothing listens', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    await assert.rejects(RedisStore.connect({ url, connectTimeoutMs: 500 }), StoreUnavailableError);
  });

  it('authenticates with the password in the url', async () => {
    const guarded = await startRedis({ password: 'p@ss/word' });
    try {
      const authed = await RedisStore.connect({ url: guarded.url });
      await authed.set('k', 1);
      assert.equal(await authed.get('k'), 1);
      await authed.close();
      const anonymous = `redis://127.0.0.1:${guarded.port}`;
      await assert.rejects(RedisStore.connect({ url: anonymous }));
    } finally {
      await guarded.stop();
    }
  });

  it('rejects an unsupported url scheme at construction', async () => {
    await assert.rejects(RedisStore.connect({ url: 'http://127.0.0.1:6379' }), TypeError);
  });

  it('times out instead of hanging when Redis stops answering', async () => {
    process.kill(redis.pid, 'SIGSTOP');
    try {
      const startedAt = Date.now();
      await assert.rejects(store.get('anything'), StoreUnavailableError);
      assert.ok(Date.now() - startedAt < 2000, `took ${Date.now() - startedAt} ms`);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    await waitUntilAnswering(store);
    await store.ping();
  });

  it('while Redis hangs, every call fails within the command timeout counted from the call, even queued behind a hung batch', async (t) => {
    // Default timeout, the figure docs/production.md promises; margin for scheduling only.
    const hung = await RedisStore.connect({ url: redis.url });
    t.after(() => hung.close());
    const outcomes: Promise<{ error: unknown; elapsedMs: number }>[] = [];
    process.kill(redis.pid, 'SIGSTOP');
    try {
      // 15 waves of 4 calls, 100 ms apart: later waves queue behind batches already waiting on Redis.
      for (let wave = 0; wave < 15; wave++) {
        for (const call of [
          () => hung.get(`k${wave}`),
          () => hung.set(`k${wave}`, wave, 60),
          () => hung.take(`k${wave}`),
          () => hung.increment(`n${wave}`, 60),
        ]) {
          const startedAt = Date.now();
          outcomes.push(call().then(
            () => ({ error: undefined, elapsedMs: Date.now() - startedAt }),
            (error: unknown) => ({ error, elapsedMs: Date.now() - startedAt }),
          ));
        }
        await sleep(100);
      }
      const settled = await Promise.all(outcomes);
      assert.equal(settled.length, 60);
      for (const { error } of settled) assert.ok(error instanceof StoreUnavailableError, String(error));
      const slowest = Math.max(...settled.map((o) => o.elapsedMs));
      assert.ok(slowest <= 1300, `slowest call failed after ${slowest} ms (timeout 1000 ms)`);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    await waitUntilAnswering(hung);
    await hung.set('after-hang', { ok: true }, 60);
    assert.deepEqual(await hung.get('after-hang'), { ok: true });
  });

  it('fails fast while Redis is down and recovers when it is back', async () => {
    await store.set('before', 1);
    await redis.stop();

    const startedAt = Date.now();
    await assert.rejects(store.get('before'), StoreUnavailableError);
    await assert.rejects(store.ping(), StoreUnavailableError);
    assert.ok(Date.now() - startedAt < 2000, `took ${Date.now() - startedAt} ms`);

    redis = await startRedis({ port: redis.port });
    await waitUntilAnswering(store);
    await store.set('after', { ok: true }, 60);
    assert.deepEqual(await store.get('after'), { ok: true });
  });
});

async function waitUntilAnswering(store: RedisStore): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await store.ping().then(() => true, () => false))) {
    assert.ok(Date.now() < deadline, 'store did not reconnect within 10 s');
    await sleep(100);
  }
}
