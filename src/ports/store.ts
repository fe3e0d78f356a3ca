/**
 * The Store port: every piece of gateway state goes through it.
 * Values are JSON-serialisable. A missing ttlSeconds means "durable" (no expiry).
 * Implementations: store/sqlite.ts (embedded default), store/redis.ts (several replicas).
 */
export interface Store {
  get<T>(key: string): Promise<T | undefined>;
  /** Stores `value` under `key`, replacing any previous value. */
  set(key: string, value: unknown, ttlSeconds?: number): Promise<void>;
  /** Stores only when the key is absent (or expired); true when this call stored it. */
  setIfAbsent(key: string, value: unknown, ttlSeconds?: number): Promise<boolean>;
  /** Atomic read-and-delete: under concurrency exactly one caller receives the value. */
  take<T>(key: string): Promise<T | undefined>;
  delete(...keys: string[]): Promise<void>;
  /** Adds a member to the set at `key`; the set's expiry is extended to at least ttlSeconds. */
  addToSet(key: string, member: string, ttlSeconds?: number): Promise<void>;
  removeFromSet(key: string, member: string): Promise<void>;
  members(key: string): Promise<string[]>;
  /** Increments a counter living `ttlSeconds` from its first increment; returns the new value. */
  increment(key: string, ttlSeconds: number): Promise<number>;
  /** Resolves when the backing service answers; rejects otherwise (used by /readyz). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Raised by a Store when its backing service cannot be reached; maps to 503. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}
