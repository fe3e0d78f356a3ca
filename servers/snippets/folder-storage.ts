import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { assertValidSnippetName, isValidSnippetName } from './names.ts';
import {
  byName,
  parseStoredSnippet,
  SNIPPET_FILE_SUFFIX,
  type SnippetStorage,
  type SnippetSummary,
  type StoredSnippet,
  serializeSnippet,
  summarize,
} from './storage.ts';

/**
 * Snippets as `<dir>/<name>.json`. A save writes a temp file beside the target (random suffix,
 * so concurrent saves never share one), fsyncs it and renames it over the target: rename is
 * atomic on POSIX, so readers and the last writer see one whole snippet, never a torn one.
 */
export async function createFolderStorage(dir: string): Promise<SnippetStorage> {
  await mkdir(dir, { recursive: true });
  const pathOf = (name: string): string => {
    assertValidSnippetName(name);
    return join(dir, name + SNIPPET_FILE_SUFFIX);
  };

  async function readSnippet(path: string): Promise<StoredSnippet | undefined> {
    try {
      return parseStoredSnippet(await readFile(path, 'utf8'), path);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  return {
    async save(name, snippet) {
      const target = pathOf(name);
      const temp = `${target}.${randomBytes(8).toString('hex')}.tmp`;
      try {
        const file = await open(temp, 'wx', 0o644);
        try {
          await file.writeFile(serializeSnippet(snippet), 'utf8');
          await file.sync();
        } finally {
          await file.close();
        }
        await rename(temp, target);
      } catch (error) {
        await rm(temp, { force: true });
        throw error;
      }
      await syncDirectory(dir);
    },

    async get(name) {
      return readSnippet(pathOf(name));
    },

    async list() {
      const summaries: SnippetSummary[] = [];
      for (const entry of await readdir(dir)) {
        if (!entry.endsWith(SNIPPET_FILE_SUFFIX)) continue;
        if (!isValidSnippetName(entry.slice(0, -SNIPPET_FILE_SUFFIX.length))) continue;
        // A snippet deleted between readdir and read is simply not listed.
        const snippet = await readSnippet(join(dir, entry));
        if (snippet) summaries.push(summarize(snippet));
      }
      return summaries.sort(byName);
    },

    async delete(name) {
      try {
        await rm(pathOf(name));
        return true;
      } catch (error) {
        if (isNotFound(error)) return false;
        throw error;
      }
    },
  };
}

/** Makes the rename itself durable; best effort (some filesystems refuse fsync on a directory). */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Durability hint only; the rename already happened.
  }
}

function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}
