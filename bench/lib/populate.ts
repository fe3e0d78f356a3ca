import { DatabaseSync } from 'node:sqlite';
import { once } from 'node:events';
import { connect } from 'node:net';
import { userKeyOf } from '../../src/oauth/grants.ts';
import { keys } from '../../src/oauth/keys.ts';
import { sha256 } from '../../src/oauth/secrets.ts';
import { systemClock } from '../../src/ports/clock.ts';
import type { AccessTokenRecord, GrantRecord } from '../../src/ports/records.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { BENCH_USER } from './users.ts';

const TTL_SECONDS = 3600;
const CLIENT_ID = 'https://client.bench/metadata.json';

/** The access token of grant i (deterministic, so the load generator can present any of them). */
export const benchToken = (i: number) => `mcpgw_at_bench-${i.toString(36).padStart(8, '0')}`;

/** Grant i as the Store holds it: the grant record and its access-token record (what the hot path reads). */
function rows(i: number, resource: string, now: number): [string, string][] {
  const grantId = `bench-grant-${i}`;
  const user = { ...BENCH_USER, subject: `bench-sub-${i}`, objectId: undefined };
  const userKey = userKeyOf(user);
  const access: AccessTokenRecord = { grantId, clientId: CLIENT_ID, userKey, user, scopes: ['mcp:tools'], resource, expiresAt: now + TTL_SECONDS };
  const grant: GrantRecord = {
    grantId,
    user,
    userKey,
    clientId: CLIENT_ID,
    scopes: ['mcp:tools'],
    resource,
    createdAt: now,
    expiresAt: now + TTL_SECONDS,
    refreshTokenHash: sha256(`rt-${i}`),
  };
  return [
    [keys.accessToken(sha256(benchToken(i))), JSON.stringify(access)],
    [keys.grant(grantId), JSON.stringify(grant)],
  ];
}

/** Adds grants [from, to) to a SQLite store file, in one transaction of plain INSERTs (the Store's own table). */
export function populateSqlite(path: string, resource: string, from: number, to: number): void {
  SqliteStore.open({ path, clock: systemClock }).close();
  const db = new DatabaseSync(path);
  try {
    db.exec('PRAGMA journal_mode = WAL');
    db.exec('PRAGMA synchronous = OFF');
    db.exec('PRAGMA cache_size = -524288'); // 512 MiB for this connection only
    const insert = db.prepare('INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)');
    const now = systemClock.nowSeconds();
    const BATCH = 200_000;
    for (let start = from; start < to; start += BATCH) {
      const batch: [string, string][] = [];
      for (let i = start; i < Math.min(to, start + BATCH); i++) batch.push(...rows(i, resource, now));
      // Key order turns random B-tree inserts into mostly sequential ones.
      batch.sort((a, b) => (a[0] < b[0] ? -1 : 1));
      db.exec('BEGIN');
      for (const [key, value] of batch) insert.run(key, value, now + TTL_SECONDS);
      db.exec('COMMIT');
    }
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
}

/**
 * Adds grants [from, to) to Redis as `SET key value EX ttl` (keys as RedisStore writes them),
 * written as raw RESP in large batches over one socket: a client library's per-command cost
 * would make a million grants take minutes.
 */
export async function populateRedis(url: string, keyPrefix: string, resource: string, from: number, to: number): Promise<void> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port) });
  await once(socket, 'connect');
  let replies = 0;
  let tail = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    const text = tail + chunk;
    if (text.includes('-ERR')) socket.destroy(new Error(`redis: ${text.slice(text.indexOf('-ERR'), text.indexOf('-ERR') + 200)}`));
    let at = text.indexOf('+OK\r\n');
    while (at >= 0) {
      replies++;
      at = text.indexOf('+OK\r\n', at + 5);
    }
    tail = text.slice(-4);
  });
  const bulk = (value: string) => `$${Buffer.byteLength(value)}\r\n${value}\r\n`;
  const now = systemClock.nowSeconds();
  const ttl = String(TTL_SECONDS);
  let expected = 0;
  const BATCH = 5000;
  try {
    for (let start = from; start < to; start += BATCH) {
      let out = '';
      for (let i = start; i < Math.min(to, start + BATCH); i++) {
        for (const [key, value] of rows(i, resource, now)) {
          out += `*5\r\n$3\r\nSET\r\n${bulk(keyPrefix + key)}${bulk(value)}$2\r\nEX\r\n${bulk(ttl)}`;
          expected++;
        }
      }
      if (!socket.write(out)) await once(socket, 'drain');
      // Keep at most a few batches unanswered.
      while (expected - replies > 4 * BATCH) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    while (replies < expected) {
      if (socket.destroyed) throw new Error('redis connection closed while populating');
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  } finally {
    socket.destroy();
  }
}
