import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createBoundedCache } from './bounded-cache.ts';

describe('bounded cache', () => {
  it('past the bound, the entry written longest ago goes first (and is reported)', () => {
    const evicted: string[] = [];
    const cache = createBoundedCache<string, number>(2, (_value, key) => evicted.push(key));
    cache.set('a', 1);
    cache.set('b', 2);
    cache.set('c', 3);
    assert.deepEqual([cache.get('a'), cache.get('b'), cache.get('c'), cache.size], [undefined, 2, 3, 2]);
    assert.deepEqual(evicted, ['a']);
  });

  it('writing a key again makes it the newest and evicts nothing', () => {
    const evicted: string[] = [];
    const cache = createBoundedCache<string, number>(2, (_value, key) => evicted.push(key));
    cache.set('a', 1);
    cache.set('b', 2);
    cache.set('a', 10);
    assert.deepEqual(evicted, []);
    cache.set('c', 3);
    assert.deepEqual(evicted, ['b'], 'b was written longest ago once a was rewritten');
    assert.deepEqual([cache.get('a'), cache.get('c')], [10, 3]);
  });

  it('a deleted key frees its place without an eviction', () => {
    const evicted: string[] = [];
    const cache = createBoundedCache<string, number>(1, (_value, key) => evicted.push(key));
    cache.set('a', 1);
    cache.delete('a');
    cache.set('b', 2);
    assert.deepEqual([evicted, cache.size, cache.get('b')], [[], 1, 2]);
  });

  it('refuses a bound below one at construction', () => {
    assert.throws(() => createBoundedCache(0), /maxEntries must be at least 1 \(got 0\)/);
  });
});
