import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sha256 } from '../oauth/secrets.ts';
import { mutableClock } from '../../test/support/gateway-harness.ts';
import { systemClock } from '../ports/clock.ts';
import type { Store } from '../ports/store.ts';
import { SqliteStore } from '../store/sqlite.ts';
import { createSessionBinding } from './session-binding.ts';

const RESOURCE = 'http://127.0.0.1:8080/mcp';

/** A Store that counts calls by method (the point of the verdict cache is fewer of them). */
function counting(inner: Store): { store: Store; calls: Record<string, number> } {
  const calls: Record<string, number> = {};
  const store = new Proxy(inner, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls[String(name)] = (calls[String(name)] ?? 0) + 1;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store, calls };
}

describe('session binding', () => {
  it('binds an issued id to its user only; others and unknown ids are refused', async () => {
    const store = SqliteStore.open({ path: ':memory:', clock: systemClock });
    const sessions = createSessionBinding(store, systemClock);
    assert.equal(await sessions.bindIssued(RESOURCE, 'sid-1', 'alice'), true);
    assert.equal(await sessions.bindIssued(RESOURCE, 'sid-1', 'alice'), true, 'the same user again');
    assert.equal(await sessions.bindIssued(RESOURCE, 'sid-1', 'bob'), false, 'never handed to another user');
    assert.equal(await sessions.owns(RESOURCE, 'sid-1', 'alice'), true);
    assert.equal(await sessions.owns(RESOURCE, 'sid-1', 'bob'), false);
    assert.equal(await sessions.owns(RESOURCE, 'never-issued', 'alice'), false);
    assert.equal(await sessions.owns('http://127.0.0.1:8080/other/mcp', 'sid-1', 'alice'), false, 'bound per resource');
    await store.close();
  });

  it('answers repeated checks from memory within 1 s, then reads the Store again', async () => {
    const sqlite = SqliteStore.open({ path: ':memory:', clock: systemClock });
    const { store, calls } = counting(sqlite);
    const clock = mutableClock();
    const sessions = createSessionBinding(store, clock);
    await sessions.bindIssued(RESOURCE, 'sid-1', 'alice');
    for (let i = 0; i < 50; i++) assert.equal(await sessions.owns(RESOURCE, 'sid-1', 'alice'), true);
    assert.equal(calls['get'] ?? 0, 0, 'no Store read while the verdict is fresh');
    assert.equal(calls['set'] ?? 0, 0, 'no expiry refresh per call');
    clock.advance(1.001);
    assert.equal(await sessions.owns(RESOURCE, 'sid-1', 'alice'), true);
    assert.equal(calls['get'], 1);
    await sqlite.close();
  });

  it('a session ended on another replica is refused here within the 1 s bound', async () => {
    const store = SqliteStore.open({ path: ':memory:', clock: systemClock });
    const clock = mutableClock();
    const replicaA = createSessionBinding(store, clock);
    const replicaB = createSessionBinding(store, clock);
    await replicaA.bindIssued(RESOURCE, 'sid-1', 'alice');
    assert.equal(await replicaA.owns(RESOURCE, 'sid-1', 'alice'), true);
    await replicaB.forget(RESOURCE, 'sid-1');
    assert.equal(await replicaB.owns(RESOURCE, 'sid-1', 'alice'), false, 'at once on the replica that ended it');
    clock.advance(1.001);
    assert.equal(await replicaA.owns(RESOURCE, 'sid-1', 'alice'), false, 'after the bound on the other one');
    await store.close();
  });

  it('a store read that finds the owner refreshes the binding expiry once, not per call', async () => {
    const sqlite = SqliteStore.open({ path: ':memory:', clock: systemClock });
    await sqlite.set(`mcp-session:${RESOURCE}:${sha256('sid-9')}`, 'alice', 60);
    const { store, calls } = counting(sqlite);
    const clock = mutableClock();
    const sessions = createSessionBinding(store, clock);
    assert.equal(await sessions.owns(RESOURCE, 'sid-9', 'alice'), true);
    assert.equal(calls['set'], 1, 'bound by another replica: this one pushes the expiry back on first use');
    clock.advance(1.001);
    assert.equal(await sessions.owns(RESOURCE, 'sid-9', 'alice'), true);
    assert.equal(calls['set'], 1, 'not again within the hour');
    await sqlite.close();
  });
});
