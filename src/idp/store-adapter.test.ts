import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mutableClock } from '../../test/support/gateway-harness.ts';
import { SqliteStore } from '../store/sqlite.ts';
import { createStoreAdapter } from './store-adapter.ts';

describe('dev IdP store adapter: expiry on the injected clock', () => {
  it('a consumed entry keeps the expiry it had on the Store’s clock, not the system’s', async () => {
    const clock = mutableClock(1_700_000_000);
    const store = SqliteStore.open({ path: ':memory:', clock });
    const codes = createStoreAdapter(store, clock)('AuthorizationCode');
    await codes.upsert('code-1', { grantId: 'grant-1' }, 60);
    clock.advance(50);
    await codes.consume('code-1');
    assert.equal(typeof (await codes.find('code-1'))?.consumed, 'number');
    assert.equal((await codes.find('code-1'))?.consumed, 1_700_000_050, 'consumed at the clock’s time');
    clock.advance(11);
    assert.equal(await codes.find('code-1'), undefined, 'gone 60 s after it was written');
    await store.close();
  });
});
