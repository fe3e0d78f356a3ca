import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { Clock } from '../ports/clock.ts';
import type { Store } from '../ports/store.ts';
import { checkTtl, toJson } from './values.ts';

export interface SqliteStoreOptions {
  /**
   * Database file, or ':memory:'. The file (and its -wal, -shm) is owner-only (0600), tightened
   * if it exists; a missing parent directory is created 0700.
   */
  path: string;
  clock: Clock;
  /** How often expired rows are deleted; reads never see them either way. */
  sweepIntervalSeconds?: number;
  /** How long a writer waits for another connection's lock before failing. */
  busyTimeoutMs?: number;
}

// A row is live while expires_at is NULL (durable) or still in the future.
const LIVE = '(expires_at IS NULL OR expires_at > :now)';

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at INTEGER
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;
  CREATE TABLE IF NOT EXISTS set_members (
    key TEXT NOT NULL,
    member TEXT NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (key, member)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS set_members_expires_at ON set_members (expires_at)
    WHERE expires_at IS NOT NULL;
`;

const SQL = {
  get: `SELECT value, expires_at FROM kv WHERE key = :key`,
  deleteIfExpired: `DELETE FROM kv WHERE key = :key AND expires_at <= :now`,
  set: `INSERT INTO kv (key, value, expires_at) VALUES (:key, :value, :expiresAt)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
  // Only an expired row may be replaced; `changes` tells whether this call stored.
  setIfAbsent: `INSERT INTO kv (key, value, expires_at) VALUES (:key, :value, :expiresAt)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
        WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= :now`,
  // One statement, so concurrent takers (any connection, any process) cannot both read it.
  take: `DELETE FROM kv WHERE key = :key AND ${LIVE} RETURNING value`,
  deleteKey: `DELETE FROM kv WHERE key = :key`,
  // An expired counter restarts at 1 with a fresh expiry.
  increment: `INSERT INTO kv (key, value, expires_at) VALUES (:key, '1', :expiresAt)
        ON CONFLICT (key) DO UPDATE SET
          value = CASE WHEN kv.expires_at <= :now THEN '1'
                       ELSE CAST(CAST(kv.value AS INTEGER) + 1 AS TEXT) END,
          expires_at = CASE WHEN kv.expires_at <= :now THEN excluded.expires_at
                            ELSE kv.expires_at END
        RETURNING value`,
  deleteExpiredSet: `DELETE FROM set_members WHERE key = :key AND expires_at <= :now`,
  // A set's members share one expiry: NULL (durable) if any is durable, else the latest.
  setExpiry: `SELECT count(*) AS n, max(expires_at IS NULL) AS durable, max(expires_at) AS latest
        FROM set_members WHERE key = :key`,
  addMember: `INSERT OR IGNORE INTO set_members (key, member, expires_at)
        VALUES (:key, :member, :expiresAt)`,
  extendSet: `UPDATE set_members SET expires_at = :expiresAt WHERE key = :key`,
  removeMember: `DELETE FROM set_members WHERE key = :key AND member = :member`,
  members: `SELECT member FROM set_members WHERE key = :key AND ${LIVE} ORDER BY member`,
  deleteSet: `DELETE FROM set_members WHERE key = :key`,
  sweepKv: `DELETE FROM kv WHERE expires_at <= :now`,
  sweepSets: `DELETE FROM set_members WHERE expires_at <= :now`,
  ping: `SELECT 1`,
} as const;

type Statements = Record<keyof typeof SQL, StatementSync>;

// The database holds sessions, grants and the dev IdP's state: readable by its owner only.
const FILE_MODE = 0o600;
const DIRECTORY_MODE = 0o700;

/**
 * Creates the database file 0600 before SQLite opens it (SQLite gives the -wal and -shm it creates
 * the database file's mode) and tightens existing files that are wider.
 */
function prepareFiles(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: DIRECTORY_MODE });
  closeSync(openSync(path, 'a', FILE_MODE));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    const stats = statSync(file, { throwIfNoEntry: false });
    if (stats && (stats.mode & 0o077) !== 0) chmodSync(file, FILE_MODE);
  }
}

/** Store over the built-in node:sqlite: one file in WAL mode, the embedded default. */
export class SqliteStore implements Store {
  readonly #db: DatabaseSync;
  readonly #clock: Clock;
  readonly #statements: Statements;
  readonly #sweepTimer: NodeJS.Timeout;
  #closed = false;

  private constructor(db: DatabaseSync, options: SqliteStoreOptions) {
    this.#db = db;
    this.#clock = options.clock;
    this.#statements = Object.fromEntries(
      Object.entries(SQL).map(([name, sql]) => [name, db.prepare(sql)]),
    ) as Statements;
    const sweepMs = (options.sweepIntervalSeconds ?? 60) * 1000;
    this.#sweepTimer = setInterval(() => this.sweepExpired(), sweepMs);
    this.#sweepTimer.unref();
  }

  static open(options: SqliteStoreOptions): SqliteStore {
    if (options.path !== ':memory:') prepareFiles(options.path);
    const db = new DatabaseSync(options.path);
    try {
      db.exec(`PRAGMA busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 5000)}`);
      db.exec('PRAGMA journal_mode = WAL');
      db.exec('PRAGMA synchronous = NORMAL');
      // Lookups stay flat as state grows past SQLite's 2 MiB default page cache (bench/ #4).
      db.exec('PRAGMA mmap_size = 268435456');
      db.exec('PRAGMA cache_size = -65536');
      db.exec(SCHEMA);
      return new SqliteStore(db, options);
    } catch (error) {
      db.close();
      throw error;
    }
  }

  async get<T>(key: string): Promise<T | undefined> {
    const row = this.#statements.get.get({ key });
    if (row === undefined) return undefined;
    const now = this.#clock.nowSeconds();
    if (row.expires_at !== null && Number(row.expires_at) <= now) {
      this.#statements.deleteIfExpired.run({ key, now }); // lazy sweep
      return undefined;
    }
    return JSON.parse(String(row.value)) as T;
  }

  async set(key: string, value: unknown, ttlSeconds?: number): Promise<void> {
    this.#statements.set.run({ key, value: toJson(value), expiresAt: this.#expiresAt(ttlSeconds) });
  }

  async setIfAbsent(key: string, value: unknown, ttlSeconds?: number): Promise<boolean> {
    const { changes } = this.#statements.setIfAbsent.run({
      key,
      value: toJson(value),
      expiresAt: this.#expiresAt(ttlSeconds),
      now: this.#clock.nowSeconds(),
    });
    return Number(changes) === 1;
  }

  async take<T>(key: string): Promise<T | undefined> {
    const row = this.#statements.take.get({ key, now: this.#clock.nowSeconds() });
    return row === undefined ? undefined : (JSON.parse(String(row.value)) as T);
  }

  async delete(...keys: string[]): Promise<void> {
    this.#transaction(() => {
      for (const key of keys) {
        this.#statements.deleteKey.run({ key });
        this.#statements.deleteSet.run({ key });
      }
    });
  }

  async addToSet(key: string, member: string, ttlSeconds?: number): Promise<void> {
    const now = this.#clock.nowSeconds();
    const wanted = this.#expiresAt(ttlSeconds);
    this.#transaction(() => {
      this.#statements.deleteExpiredSet.run({ key, now });
      const current = this.#statements.setExpiry.get({ key })!;
      const isNew = Number(current.n) === 0;
      // Extend only: a durable set stays durable, a later expiry is kept.
      const expiresAt =
        wanted === null || (!isNew && Number(current.durable) === 1)
          ? null
          : Math.max(wanted, isNew ? 0 : Number(current.latest));
      this.#statements.addMember.run({ key, member, expiresAt });
      this.#statements.extendSet.run({ key, expiresAt });
    });
  }

  async removeFromSet(key: string, member: string): Promise<void> {
    this.#statements.removeMember.run({ key, member });
  }

  async members(key: string): Promise<string[]> {
    const rows = this.#statements.members.all({ key, now: this.#clock.nowSeconds() });
    return rows.map((row) => String(row.member));
  }

  async increment(key: string, ttlSeconds: number): Promise<number> {
    const row = this.#statements.increment.get({
      key,
      expiresAt: this.#expiresAt(ttlSeconds),
      now: this.#clock.nowSeconds(),
    })!;
    return Number(row.value);
  }

  async ping(): Promise<void> {
    this.#statements.ping.get();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    this.#db.close();
  }

  /** Deletes every expired row; runs on a timer, callable directly. */
  sweepExpired(): void {
    if (this.#closed) return;
    const now = this.#clock.nowSeconds();
    this.#statements.sweepKv.run({ now });
    this.#statements.sweepSets.run({ now });
  }

  #expiresAt(ttlSeconds: number | undefined): number | null {
    if (ttlSeconds === undefined) return null;
    return this.#clock.nowSeconds() + checkTtl(ttlSeconds);
  }

  /** BEGIN IMMEDIATE takes the write lock up front, so read-then-write steps cannot interleave. */
  #transaction(work: () => void): void {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      work();
      this.#db.exec('COMMIT');
    } catch (error) {
      this.#db.exec('ROLLBACK');
      throw error;
    }
  }
}
