import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Store } from '../../src/ports/store.ts';

/** What the contract needs from one Store technology. */
export interface StoreBackend {
  /** Opens another Store over the same data (same file, same server). */
  open(): Promise<Store>;
  /** Lets `seconds` of store time pass: moves an injected clock, or really waits. */
  elapse(seconds: number): Promise<void>;
  dispose(): Promise<void>;
}

/** The behaviour every Store implementation must share (DESIGN §4). */
export function describeStoreContract(name: string, makeBackend: () => Promise<StoreBackend>) {
  describe(`Store contract: ${name}`, () => {
    let backend: StoreBackend;
    let store: Store;
    const run = randomUUID().slice(0, 8);
    let counter = 0;
    const uniqueKey = (label: string) => `${label}:${run}:${++counter}`;

    before(async () => {
      backend = await makeBackend();
      store = await backend.open();
    });
    after(async () => {
      await store?.close();
      await backend?.dispose();
    });

    it('round-trips nested JSON', async () => {
      const key = uniqueKey('json');
      const value = { a: 1, b: [true, null, 'x'], c: { d: { e: 'ünï©ødé' } }, f: 1.5 };
      await store.set(key, value);
      assert.deepEqual(await store.get(key), value);
    });

    it('overwrites a value, and a set without ttl makes the key durable', async () => {
      const key = uniqueKey('overwrite');
      await store.set(key, 'first', 1);
      await store.set(key, 'second');
      await backend.elapse(1);
      assert.equal(await store.get(key), 'second');
    });

    it('returns undefined for a missing key', async () => {
      assert.equal(await store.get(uniqueKey('missing')), undefined);
      assert.equal(await store.take(uniqueKey('missing')), undefined);
    });

    it('hides keys once their ttl has passed, keeps durable and longer-lived ones', async () => {
      const [shortLived, longLived, durable] = ['short', 'long', 'durable'].map(uniqueKey);
      await store.set(shortLived!, { v: 1 }, 1);
      await store.set(longLived!, { v: 2 }, 600);
      await store.set(durable!, { v: 3 });
      assert.deepEqual(await store.get(shortLived!), { v: 1 });
      await backend.elapse(1);
      assert.equal(await store.get(shortLived!), undefined);
      assert.equal(await store.take(shortLived!), undefined);
      assert.deepEqual(await store.get(longLived!), { v: 2 });
      assert.deepEqual(await store.get(durable!), { v: 3 });
    });

    it('rejects a ttl that is not a positive integer', async () => {
      await assert.rejects(store.set(uniqueKey('ttl'), 1, 0), RangeError);
      await assert.rejects(store.set(uniqueKey('ttl'), 1, 1.5), RangeError);
    });

    it('setIfAbsent stores once, and again after the key expired', async () => {
      const key = uniqueKey('nx');
      assert.equal(await store.setIfAbsent(key, 'first', 1), true);
      assert.equal(await store.setIfAbsent(key, 'second', 1), false);
      assert.equal(await store.get(key), 'first');
      await backend.elapse(1);
      assert.equal(await store.setIfAbsent(key, 'third'), true);
      assert.equal(await store.get(key), 'third');
      assert.equal(await store.setIfAbsent(key, 'fourth'), false);
    });

    it('take returns the value and deletes it', async () => {
      const key = uniqueKey('take');
      await store.set(key, { code: 'abc' }, 600);
      assert.deepEqual(await store.take(key), { code: 'abc' });
      assert.equal(await store.take(key), undefined);
      assert.equal(await store.get(key), undefined);
    });

    it('hands a value to exactly one of 100 concurrent takers', async () => {
      const key = uniqueKey('race');
      await store.set(key, 'prize', 600);
      const results = await Promise.all(Array.from({ length: 100 }, () => store.take(key)));
      assert.deepEqual(
        results.filter((result) => result !== undefined),
        ['prize'],
      );
    });

    it('hands a value to exactly one taker across two store instances', async () => {
      const other = await backend.open();
      try {
        const key = uniqueKey('race2');
        await store.set(key, 'prize', 600);
        const takers = Array.from({ length: 100 }, (_, i) => (i % 2 ? store : other).take(key));
        const results = await Promise.all(takers);
        assert.equal(results.filter((result) => result === 'prize').length, 1);
        assert.equal(results.filter((result) => result === undefined).length, 99);
      } finally {
        await other.close();
      }
    });

    it('deletes several keys at once, sets included, ignoring missing ones', async () => {
      const [a, b, set, kept] = ['a', 'b', 'set', 'kept'].map(uniqueKey);
      await store.set(a!, 1);
      await store.set(b!, 2, 600);
      await store.addToSet(set!, 'm');
      await store.set(kept!, 3);
      await store.delete(a!, b!, set!, uniqueKey('missing'));
      await store.delete();
      assert.equal(await store.get(a!), undefined);
      assert.equal(await store.get(b!), undefined);
      assert.deepEqual(await store.members(set!), []);
      assert.equal(await store.get(kept!), 3);
    });

    it('adds, lists and removes set members', async () => {
      const key = uniqueKey('set');
      assert.deepEqual(await store.members(key), []);
      await store.addToSet(key, 'grant-b', 600);
      await store.addToSet(key, 'grant-a', 600);
      await store.addToSet(key, 'grant-b', 600);
      assert.deepEqual((await store.members(key)).sort(), ['grant-a', 'grant-b']);
      await store.removeFromSet(key, 'grant-b');
      await store.removeFromSet(key, 'not-a-member');
      assert.deepEqual(await store.members(key), ['grant-a']);
      await store.removeFromSet(key, 'grant-a');
      assert.deepEqual(await store.members(key), []);
    });

    it('expires a set, only ever extending its ttl', async () => {
      const [expiring, extended, notShortened, durable] = [
        'expiring',
        'extended',
        'not-shortened',
        'durable',
      ].map(uniqueKey);
      await store.addToSet(expiring!, 'x', 1);
      await store.addToSet(extended!, 'x', 1);
      await store.addToSet(extended!, 'y', 600);
      await store.addToSet(notShortened!, 'x', 600);
      await store.addToSet(notShortened!, 'y', 1);
      await store.addToSet(durable!, 'x');
      await store.addToSet(durable!, 'y', 1);
      await backend.elapse(1);
      assert.deepEqual(await store.members(expiring!), []);
      assert.deepEqual((await store.members(extended!)).sort(), ['x', 'y']);
      assert.deepEqual((await store.members(notShortened!)).sort(), ['x', 'y']);
      assert.deepEqual((await store.members(durable!)).sort(), ['x', 'y']);
      // An expired set starts afresh.
      await store.addToSet(expiring!, 'z', 600);
      assert.deepEqual(await store.members(expiring!), ['z']);
    });

    it('increments a counter that expires ttl seconds after its first increment', async () => {
      const key = uniqueKey('counter');
      assert.equal(await store.increment(key, 1), 1);
      assert.equal(await store.increment(key, 1), 2);
      assert.equal(await store.increment(key, 600), 3);
      assert.equal(await store.get(key), 3);
      await backend.elapse(1);
      assert.equal(await store.get(key), undefined);
      assert.equal(await store.increment(key, 600), 1);
    });

    it('increments atomically under concurrency', async () => {
      const key = uniqueKey('counter-race');
      const counts = await Promise.all(Array.from({ length: 50 }, () => store.increment(key, 600)));
      assert.deepEqual(
        counts.sort((x, y) => x - y),
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
    });

    it('answers ping', async () => {
      await store.ping();
    });

    it('keeps data across close and reopen', async () => {
      const first = await backend.open();
      const [key, set] = [uniqueKey('durable'), uniqueKey('durable-set')];
      await first.set(key, { kept: true });
      await first.addToSet(set, 'm', 600);
      await first.close();
      const second = await backend.open();
      try {
        assert.deepEqual(await second.get(key), { kept: true });
        assert.deepEqual(await second.members(set), ['m']);
      } finally {
        await second.close();
      }
    });
  });
}
