import type { ConnectionOptions } from 'node:tls';
import { Redis } from 'ioredis';
import { type Clock, nowMsOf, systemClock } from '../ports/clock.ts';
import { type Store, StoreUnavailableError } from '../ports/store.ts';
import { checkTtl, toJson } from './values.ts';

export interface RedisStoreOptions {
  /** redis://[:password@]host:port[/db] or rediss://… for TLS. */
  url: string;
  /** Prepended to every key, so several deployments can share one Redis. */
  keyPrefix?: string;
  /** Extra TLS options (CA, servername); rediss:// turns TLS on by itself. */
  tls?: ConnectionOptions;
  connectTimeoutMs?: number;
  commandTimeoutMs?: number;
  /**
   * A short-lived credential used instead of a password in the url (e.g. a Microsoft Entra token,
   * store/redis-entra.ts): sent with AUTH on every connection, and re-sent on the live connection
   * before it expires.
   */
  getCredential?: () => Promise<RedisCredential>;
  /** Schedules credential refreshes (default: the system clock). */
  clock?: Clock;
}

/** A user name and a password that stops working at `expiresAt` (epoch seconds). */
export interface RedisCredential {
  username: string;
  password: string;
  expiresAt: number;
}

/** A credential is renewed when this fraction of its remaining lifetime has passed. */
const CREDENTIAL_REFRESH_FRACTION = 0.8;
/** After a failed renewal, try again this much later. */
const CREDENTIAL_RETRY_MS = 5000;
/** Never renew more often than this, even for a credential about to expire. */
const MIN_CREDENTIAL_REFRESH_MS = 1000;

const MAX_RECONNECT_DELAY_MS = 2000;

/**
 * SADD, then extend the set's TTL to at least ARGV[2] seconds; with no ARGV[2] the set
 * becomes durable. A new set gets the TTL; an existing durable set stays durable.
 */
const ADD_TO_SET_SCRIPT = `
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SADD', KEYS[1], ARGV[1])
if ARGV[2] == nil then
  redis.call('PERSIST', KEYS[1])
elseif existed == 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2], 'GT')
end
return 1
`;

function refreshDelayMs(expiresAt: number, clock: Clock): number {
  return Math.max(MIN_CREDENTIAL_REFRESH_MS, (expiresAt * 1000 - nowMsOf(clock)) * CREDENTIAL_REFRESH_FRACTION);
}

/** Store over Redis (ioredis), for several gateway replicas sharing state. */
export class RedisStore implements Store {
  readonly #redis: Redis;
  readonly #keyPrefix: string;
  readonly #connectTimeoutMs: number;
  readonly #commandTimeoutMs: number;
  /** Kept for error messages: "Connection is closed" alone hides e.g. WRONGPASS. */
  #lastConnectionError: Error | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;

  private constructor(redis: Redis, keyPrefix: string, connectTimeoutMs: number, commandTimeoutMs: number) {
    this.#redis = redis;
    this.#keyPrefix = keyPrefix;
    this.#connectTimeoutMs = connectTimeoutMs;
    this.#commandTimeoutMs = commandTimeoutMs;
    // Without an 'error' listener ioredis logs every failed reconnect to the console.
    redis.on('error', (error: Error) => {
      this.#lastConnectionError = error;
    });
    redis.on('ready', () => {
      this.#lastConnectionError = undefined;
    });
  }

  /**
   * Connects and waits until Redis answers, so a wrong URL fails at start.
   * Afterwards commands fail fast with StoreUnavailableError while Redis is away,
   * and the client reconnects by itself with capped backoff.
   */
  static async connect(options: RedisStoreOptions): Promise<RedisStore> {
    const protocol = new URL(options.url).protocol;
    if (protocol !== 'redis:' && protocol !== 'rediss:') {
      throw new TypeError(`Redis url must start with redis:// or rediss://, got ${protocol}//`);
    }
    if (options.tls && protocol !== 'rediss:') throw new TypeError('Redis TLS options need a rediss:// url');
    const url = new URL(options.url);
    if (options.getCredential && (url.username || url.password)) {
      throw new TypeError('Redis url must carry no user or password when a credential (Entra authentication) is used');
    }
    const connectTimeoutMs = options.connectTimeoutMs ?? 2000;
    const commandTimeoutMs = options.commandTimeoutMs ?? 1000;
    const redis = new Redis(options.url, {
      ...(options.tls ? { tls: options.tls } : {}),
      lazyConnect: true,
      enableOfflineQueue: false,
      // Concurrent commands from many requests share one round trip (bench/ #2).
      enableAutoPipelining: true,
      maxRetriesPerRequest: 1,
      connectTimeout: connectTimeoutMs,
      // Counts from when a command is written, which with auto-pipelining can be a whole
      // timeout after the call (queued behind a hung batch); #call's deadline is the bound.
      commandTimeout: commandTimeoutMs,
      retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, MAX_RECONNECT_DELAY_MS),
    });
    const store = new RedisStore(redis, options.keyPrefix ?? 'mcpgw:', connectTimeoutMs, commandTimeoutMs);
    try {
      if (options.getCredential) {
        const credential = await options.getCredential();
        store.#useCredential(credential);
        const clock = options.clock ?? systemClock;
        store.#scheduleRefresh(options.getCredential, refreshDelayMs(credential.expiresAt, clock), clock);
      }
      await store.#call(() => redis.connect(), connectTimeoutMs + commandTimeoutMs);
      return store;
    } catch (error) {
      clearTimeout(store.#refreshTimer);
      redis.disconnect();
      throw error;
    }
  }

  /**
   * Every (re)connection AUTHenticates with what is in the client's options, so the newest
   * credential goes there; the live connection is re-AUTHenticated with it at once, since a
   * token-authenticated connection is cut when its token expires (Azure Managed Redis and Azure
   * Cache for Redis with Microsoft Entra authentication).
   */
  #useCredential(credential: RedisCredential): void {
    this.#redis.options.username = credential.username;
    this.#redis.options.password = credential.password;
    if (this.#redis.status === 'ready') {
      this.#call(() => this.#redis.auth(credential.username, credential.password)).catch((error: Error) => {
        this.#lastConnectionError = error;
      });
    }
  }

  /** Renews the credential when most of its lifetime has passed; a failed renewal is retried. */
  #scheduleRefresh(getCredential: () => Promise<RedisCredential>, delayMs: number, clock: Clock): void {
    this.#refreshTimer = setTimeout(async () => {
      try {
        const credential = await getCredential();
        if (this.#redis.status === 'end') return;
        this.#useCredential(credential);
        this.#scheduleRefresh(getCredential, refreshDelayMs(credential.expiresAt, clock), clock);
      } catch (error) {
        this.#lastConnectionError = error as Error;
        if (this.#redis.status !== 'end') this.#scheduleRefresh(getCredential, CREDENTIAL_RETRY_MS, clock);
      }
    }, delayMs);
    this.#refreshTimer.unref();
  }

  async get<T>(key: string): Promise<T | undefined> {
    const json = await this.#call(() => this.#redis.get(this.#key(key)));
    return json === null ? undefined : (JSON.parse(json) as T);
  }

  async set(key: string, value: unknown, ttlSeconds?: number): Promise<void> {
    const json = toJson(value);
    const ttl = ttlSeconds === undefined ? undefined : checkTtl(ttlSeconds);
    await this.#call(() =>
      ttl === undefined
        ? this.#redis.set(this.#key(key), json)
        : this.#redis.set(this.#key(key), json, 'EX', ttl),
    );
  }

  async setIfAbsent(key: string, value: unknown, ttlSeconds?: number): Promise<boolean> {
    const json = toJson(value);
    const ttl = ttlSeconds === undefined ? undefined : checkTtl(ttlSeconds);
    const reply = await this.#call(() =>
      ttl === undefined
        ? this.#redis.set(this.#key(key), json, 'NX')
        : this.#redis.set(this.#key(key), json, 'EX', ttl, 'NX'),
    );
    return reply === 'OK';
  }

  async take<T>(key: string): Promise<T | undefined> {
    // GETDEL (Redis ≥ 6.2) is atomic: exactly one concurrent caller gets the value.
    const json = await this.#call(() => this.#redis.getdel(this.#key(key)));
    return json === null ? undefined : (JSON.parse(json) as T);
  }

  async delete(...keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.#call(() => this.#redis.del(...keys.map((key) => this.#key(key))));
  }

  async addToSet(key: string, member: string, ttlSeconds?: number): Promise<void> {
    const args = ttlSeconds === undefined ? [member] : [member, checkTtl(ttlSeconds)];
    await this.#call(() => this.#redis.eval(ADD_TO_SET_SCRIPT, 1, this.#key(key), ...args));
  }

  async removeFromSet(key: string, member: string): Promise<void> {
    await this.#call(() => this.#redis.srem(this.#key(key), member));
  }

  async members(key: string): Promise<string[]> {
    const members = await this.#call(() => this.#redis.smembers(this.#key(key)));
    return members.sort();
  }

  async increment(key: string, ttlSeconds: number): Promise<number> {
    const ttl = checkTtl(ttlSeconds);
    const fullKey = this.#key(key);
    // EXPIRE NX sets the TTL only on the first increment, so the window is fixed.
    const replies = await this.#call(() =>
      this.#redis.multi().incr(fullKey).expire(fullKey, ttl, 'NX').exec(),
    );
    const [incrError, count] = replies?.[0] ?? [new Error('MULTI was aborted'), null];
    if (incrError) throw incrError;
    return Number(count);
  }

  async ping(): Promise<void> {
    await this.#call(() => this.#redis.ping());
  }

  async close(): Promise<void> {
    clearTimeout(this.#refreshTimer);
    if (this.#redis.status === 'end') return;
    if (this.#redis.status !== 'ready') {
      this.#redis.disconnect();
      return;
    }
    try {
      await this.#redis.quit();
    } catch {
      this.#redis.disconnect();
    }
  }

  #key(key: string): string {
    return this.#keyPrefix + key;
  }

  /**
   * Runs one Redis call; connection-level failures become StoreUnavailableError, and so does
   * a call still unanswered `timeoutMs` after it was made. A command that timed out may still
   * reach Redis and take effect once it answers again: its outcome is unknown to the caller.
   * Validate arguments before calling: anything thrown in here counts as an outage.
   */
  async #call<R>(command: () => Promise<R>, timeoutMs = this.#commandTimeoutMs): Promise<R> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([command(), deadline]);
    } catch (error) {
      // A ReplyError is Redis answering (WRONGTYPE, script error): a bug, not an outage.
      if (error instanceof Error && error.name === 'ReplyError') throw error;
      const reason = error instanceof Error ? error.message : String(error);
      const last = this.#lastConnectionError?.message;
      const status = `status ${this.#redis.status}, connect timeout ${this.#connectTimeoutMs} ms`;
      throw new StoreUnavailableError(
        `Redis unavailable (${status}): ${reason}${last ? `; last connection error: ${last}` : ''}`,
        { cause: error },
      );
    } finally {
      clearTimeout(timer);
    }
  }
}
