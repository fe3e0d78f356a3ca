import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadOrCreateDevSecrets } from './dev.ts';

describe('dev secrets', () => {
  it('a new dev system gives alice Snippets.Write and bob Snippets.Read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dev-secrets-'));
    try {
      const users = loadOrCreateDevSecrets(dir).users;
      assert.deepEqual(users.map((u) => [u.login, u.roles]), [['alice', ['admin', 'Snippets.Write']], ['bob', ['Snippets.Read']]]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a dev-secrets file written before the sample policy is upgraded with the roles, keeping everything else', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dev-secrets-'));
    try {
      const old = {
        encryptionKey: 'e',
        cookieKey: 'c',
        signingKey: 's',
        functionKey: 'f',
        users: [
          { login: 'alice', password: 'pa', name: 'Alice Admin', email: 'alice@example.com', oid: 'o1', roles: ['admin'], groups: ['mcp-users'] },
          { login: 'bob', password: 'pb', name: 'Bob Builder', email: 'bob@example.com', oid: 'o2', roles: [], groups: ['mcp-users'] },
        ],
      };
      writeFileSync(join(dir, 'dev-secrets.json'), JSON.stringify(old));
      const expected = { ...old, users: [{ ...old.users[0]!, roles: ['admin', 'Snippets.Write'] }, { ...old.users[1]!, roles: ['Snippets.Read'] }] };
      assert.deepEqual(loadOrCreateDevSecrets(dir), expected);
      assert.deepEqual(JSON.parse(readFileSync(join(dir, 'dev-secrets.json'), 'utf8')), expected);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
