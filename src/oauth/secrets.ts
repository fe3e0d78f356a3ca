import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { SealedSecret } from '../ports/records.ts';

/** 256-bit random token with a recognisable prefix (DESIGN §4), e.g. `mcpgw_at_…`. */
export function randomToken(prefix: string): string {
  return `${prefix}${randomBytes(32).toString('base64url')}`;
}

/** The Store keeps only this digest of a token (DESIGN §4): a dump yields no usable token. */
export function sha256(value: string): string {
  return createHash('sha256').update(value).digest('base64url');
}

export function constantTimeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/**
 * AES-256-GCM under a key derived (HKDF-SHA256, RFC 5869) from a token the Store never holds:
 * only whoever presents that token again can open it, and a Store dump alone opens nothing.
 */
export function sealForHolder(token: string, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', holderKey(token), iv);
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url');
}

/** Undefined when `token` is not the one it was sealed for (or the data was altered). */
export function openForHolder(token: string, sealed: string): string | undefined {
  const raw = Buffer.from(sealed, 'base64url');
  if (raw.length < 28) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', holderKey(token), raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}

function holderKey(token: string): Buffer {
  return Buffer.from(hkdfSync('sha256', token, 'mcpgw holder seal', '', 32));
}

export interface EncryptionKey {
  id: string;
  /** 32 raw bytes. */
  key: Buffer;
}

/** AES-256-GCM with key ids, so keys rotate: the first key seals, any listed key opens (config checks their sizes). */
export function createSealer(keys: readonly EncryptionKey[]) {
  const sealingKey = keys[0]!;
  const byId = new Map(keys.map((k) => [k.id, k.key]));
  return {
    seal(plaintext: string): SealedSecret {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', sealingKey.key, iv);
      cipher.setAAD(Buffer.from(sealingKey.id));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return { keyId: sealingKey.id, sealed: Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url') };
    },
    /** Returns undefined when the key is gone or the data was tampered with. */
    open(secret: SealedSecret): string | undefined {
      const key = byId.get(secret.keyId);
      if (!key) return undefined;
      const raw = Buffer.from(secret.sealed, 'base64url');
      if (raw.length < 28) return undefined;
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
        decipher.setAAD(Buffer.from(secret.keyId));
        decipher.setAuthTag(raw.subarray(raw.length - 16));
        return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8');
      } catch {
        return undefined;
      }
    },
  };
}
export type Sealer = ReturnType<typeof createSealer>;

/** HMAC-signed, expiring values for cookies and CSRF tokens: `base64url(json).base64url(mac)`. */
export function createSigner(key: Buffer) {
  const mac = (data: string) => createHmac('sha256', key).update(data).digest('base64url');
  return {
    sign(payload: unknown): string {
      const data = Buffer.from(JSON.stringify(payload)).toString('base64url');
      return `${data}.${mac(data)}`;
    },
    verify<T>(value: string | undefined): T | undefined {
      if (!value) return undefined;
      const dot = value.indexOf('.');
      if (dot < 0) return undefined;
      const data = value.slice(0, dot);
      if (!constantTimeEqual(value.slice(dot + 1), mac(data))) return undefined;
      try {
        return JSON.parse(Buffer.from(data, 'base64url').toString('utf8')) as T;
      } catch {
        return undefined;
      }
    },
    mac,
  };
}
export type Signer = ReturnType<typeof createSigner>;
