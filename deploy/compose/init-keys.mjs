// Makes the gateway's keys once, in the directory given (the gateway's data volume), and never
// replaces one: a new key would sign everyone out. Plain JavaScript, run by the gateway image.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) throw new Error('usage: node init-keys.mjs <directory>');
const keys = {
  // secrets.encryptionKeys[0].key: 32 random bytes, base64 (AES-256-GCM)
  'encryption-key': () => randomBytes(32).toString('base64'),
  // secrets.cookieKey: 48 random bytes, base64 (HMAC)
  'cookie-key': () => randomBytes(48).toString('base64'),
  // secrets.signingKey: P-256 private key, PKCS#8 PEM (ES256 identity assertions)
  'signing-key.pem': () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
};
mkdirSync(dir, { recursive: true, mode: 0o700 });
for (const [name, make] of Object.entries(keys)) {
  try {
    writeFileSync(join(dir, name), make(), { mode: 0o600, flag: 'wx' });
    console.log(`created ${name}`);
  } catch (error) {
    if (error.code !== 'EEXIST') throw error;
  }
}
