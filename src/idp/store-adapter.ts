import type { Store } from '../ports/store.ts';

/** What oidc-provider stores per model instance (sessions, grants, codes, refresh tokens…). */
type Payload = Record<string, unknown> & { grantId?: string; uid?: string; userCode?: string; consumed?: number };

interface Entry {
  payload: Payload;
  /** Epoch seconds. */
  expiresAt: number;
}

/**
 * oidc-provider's adapter interface over our Store, so the dev IdP keeps its sessions, grants and
 * refresh tokens across restarts (`npm start` twice: refresh still works).
 */
export function createStoreAdapter(store: Store, prefix = 'devidp:') {
  const now = () => Math.floor(Date.now() / 1000);
  return (model: string) => {
    const key = (id: string) => `${prefix}${model}:${id}`;
    const remaining = (entry: Entry) => Math.max(1, entry.expiresAt - now());
    const read = async (id: string) => (await store.get<Entry>(key(id)))?.payload;
    return {
      async upsert(id: string, payload: Payload, expiresIn: number) {
        const entry: Entry = { payload, expiresAt: now() + expiresIn };
        if (payload.grantId) await store.addToSet(`${prefix}grant:${payload.grantId}`, key(id), expiresIn);
        if (payload.uid) await store.set(`${prefix}${model}-uid:${payload.uid}`, id, expiresIn);
        if (payload.userCode) await store.set(`${prefix}${model}-usercode:${payload.userCode}`, id, expiresIn);
        await store.set(key(id), entry, expiresIn);
      },
      find: read,
      async findByUid(uid: string) {
        const id = await store.get<string>(`${prefix}${model}-uid:${uid}`);
        return id ? read(id) : undefined;
      },
      async findByUserCode(userCode: string) {
        const id = await store.get<string>(`${prefix}${model}-usercode:${userCode}`);
        return id ? read(id) : undefined;
      },
      async consume(id: string) {
        const entry = await store.get<Entry>(key(id));
        if (entry) await store.set(key(id), { ...entry, payload: { ...entry.payload, consumed: now() } }, remaining(entry));
      },
      async destroy(id: string) {
        await store.delete(key(id));
      },
      async revokeByGrantId(grantId: string) {
        const setKey = `${prefix}grant:${grantId}`;
        await store.delete(...(await store.members(setKey)), setKey);
      },
    };
  };
}
