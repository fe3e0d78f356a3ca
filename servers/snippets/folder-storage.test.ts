import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createFolderStorage } from './folder-storage.ts';
import type { SnippetStorage } from './storage.ts';

describe('folder storage', () => {
  let root: string;
  let dir: string;
  let storage: SnippetStorage;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'snippets-folder-'));
    dir = join(root, 'snippets');
    storage = await createFolderStorage(dir);
  });
  after(() => rm(root, { recursive: true, force: true }));

  it('refuses names that could leave its folder, even when called directly', async () => {
    const snippet = { name: 'x', content: 'x', savedAt: '2025-01-01T00:00:00.000Z' };
    await assert.rejects(storage.save('../outside', snippet), { name: 'RangeError' });
    await assert.rejects(storage.get('..'), { name: 'RangeError' });
    await assert.rejects(storage.delete('a/b'), { name: 'RangeError' });
    assert.deepEqual(await readdir(root), ['snippets']);
  });

  it('stores <name>.json and lists only snippet files', async () => {
    await storage.save('kept', { name: 'kept', content: 'abc', savedAt: '2025-01-01T00:00:00.000Z' });
    await writeFile(join(dir, 'notes.txt'), 'not a snippet');
    await writeFile(join(dir, 'kept.json.0123abcd.tmp'), '{"torn');
    assert.deepEqual(await storage.list(), [{ name: 'kept', savedAt: '2025-01-01T00:00:00.000Z', sizeBytes: 3 }]);
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'kept.json'), 'utf8')), {
      name: 'kept',
      content: 'abc',
      savedAt: '2025-01-01T00:00:00.000Z',
    });
  });
});
