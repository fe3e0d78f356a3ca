/**
 * An in-process cache of at most `maxEntries` entries (the key is often a client's value, so the
 * bound is what keeps memory finite). One eviction rule: past the bound, the entry written longest
 * ago goes first. Expiry is the caller's (each entry carries its own deadline on the injected Clock).
 */
export interface BoundedCache<K, V> {
  get(key: K): V | undefined;
  /** Stores `value` as the newest entry, evicting the oldest when full. */
  set(key: K, value: V): void;
  delete(key: K): void;
  readonly size: number;
}

export function createBoundedCache<K, V>(maxEntries: number, onEvict?: (value: V, key: K) => void): BoundedCache<K, V> {
  if (!(maxEntries >= 1)) throw new Error(`bounded cache: maxEntries must be at least 1 (got ${maxEntries})`);
  const entries = new Map<K, V>();
  return {
    get: (key) => entries.get(key),
    set(key, value) {
      entries.delete(key);
      if (entries.size >= maxEntries) {
        const [oldestKey, oldest] = entries.entries().next().value!;
        entries.delete(oldestKey);
        onEvict?.(oldest, oldestKey);
      }
      entries.set(key, value);
    },
    delete(key) {
      entries.delete(key);
    },
    get size() {
      return entries.size;
    },
  };
}
