import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { keys } from '../oauth/keys.ts';
import type { Clock } from '../ports/clock.ts';
import type { Store } from '../ports/store.ts';

/** What oidc-provider stores per model instance (sessions, grants, codes, refresh tokens…). */
type Payload = Record<string, unknown> & { grantId?: string; uid?: string; userCode?: string; consumed?: number };

interface Entry {
  /** The payload, sealed under a key derived from the entry's id (see `seal`). */
  sealed: string;
  /** Epoch seconds. */
  expiresAt: number;
}

/**
 * oidc-provider's adapter interface over our Store, so the dev IdP keeps its sessions, grants and
 * refresh tokens across restarts (`npm start` twice: refresh still works).
 *
 * Ids are bearer secrets (the session cookie, interaction cookie, codes, tokens) and payloads
 * repeat them (`jti`, an Interaction's session cookie and return URL), so the Store holds neither:
 * every key names an id by its SHA-256, every entry is sealed under a key derived from its id, and
 * the uid / user-code indexes hold the id sealed under the uid / user code. Reading an entry takes
 * its id; a copy of the Store signs no one in.
 */
export function createStoreAdapter(store: Store, clock: Clock) {
  const now = () => clock.nowSeconds();
  return (model: string) => {
    const key = (id: string) => keys.devIdpEntry(model, id);
    const uidKey = (uid: string) => keys.devIdpByUid(model, uid);
    const userCodeKey = (userCode: string) => keys.devIdpByUserCode(model, userCode);
    const remaining = (entry: Entry) => Math.max(1, entry.expiresAt - now());
    const read = async (id: string) => {
      const entry = await store.get<Entry>(key(id));
      return entry && (JSON.parse(open(id, key(id), entry.sealed)) as Payload);
    };
    const readIndexed = async (indexKey: string, secret: string) => {
      const sealedId = await store.get<string>(indexKey);
      return sealedId ? read(open(secret, indexKey, sealedId)) : undefined;
    };
    return {
      async upsert(id: string, payload: Payload, expiresIn: number) {
        const entry: Entry = { sealed: seal(id, key(id), JSON.stringify(payload)), expiresAt: now() + expiresIn };
        if (payload.grantId) await store.addToSet(keys.devIdpGrant(payload.grantId), key(id), expiresIn);
        if (payload.uid) await store.set(uidKey(payload.uid), seal(payload.uid, uidKey(payload.uid), id), expiresIn);
        if (payload.userCode) {
          await store.set(userCodeKey(payload.userCode), seal(payload.userCode, userCodeKey(payload.userCode), id), expiresIn);
        }
        await store.set(key(id), entry, expiresIn);
      },
      find: read,
      findByUid: (uid: string) => readIndexed(uidKey(uid), uid),
      findByUserCode: (userCode: string) => readIndexed(userCodeKey(userCode), userCode),
      async consume(id: string) {
        const entry = await store.get<Entry>(key(id));
        if (!entry) return;
        const payload = { ...(JSON.parse(open(id, key(id), entry.sealed)) as Payload), consumed: now() };
        await store.set(key(id), { ...entry, sealed: seal(id, key(id), JSON.stringify(payload)) }, remaining(entry));
      },
      async destroy(id: string) {
        await store.delete(key(id));
      },
      async revokeByGrantId(grantId: string) {
        const setKey = keys.devIdpGrant(grantId);
        await store.delete(...(await store.members(setKey)), setKey);
      },
    };
  };
}

const SEAL_INFO = 'mcpgw devidp entry';

/** AES-256-GCM under HKDF-SHA256(secret); the Store key is the associated data, so entries cannot be swapped. */
function seal(secret: string, storeKey: string, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', sealingKey(secret), iv);
  cipher.setAAD(Buffer.from(storeKey));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url');
}

function open(secret: string, storeKey: string, sealed: string): string {
  const bytes = Buffer.from(sealed, 'base64url');
  const decipher = createDecipheriv('aes-256-gcm', sealingKey(secret), bytes.subarray(0, 12));
  decipher.setAAD(Buffer.from(storeKey));
  decipher.setAuthTag(bytes.subarray(-16));
  return Buffer.concat([decipher.update(bytes.subarray(12, -16)), decipher.final()]).toString('utf8');
}

function sealingKey(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, '', SEAL_INFO, 32));
}
