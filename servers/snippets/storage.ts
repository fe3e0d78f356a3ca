/** The storage port of the snippets server: a local folder or Azure Blob Storage implements it. */

/** Who saved a snippet, from the gateway's verified identity assertion. */
export interface SnippetAuthor {
  sub: string;
  name?: string;
  email?: string;
  oid?: string;
  tid?: string;
}

export interface StoredSnippet {
  name: string;
  content: string;
  savedBy?: SnippetAuthor;
  /** ISO 8601 timestamp. */
  savedAt: string;
}

export interface SnippetSummary {
  name: string;
  /** ISO 8601 timestamp. */
  savedAt: string;
  /** UTF-8 length of the content. */
  sizeBytes: number;
}

/**
 * Names passed in are already valid (see names.ts); implementations re-check them so no name can
 * reach outside their folder or container. A save replaces the whole snippet at once: readers see
 * the old one or the new one, never a mix.
 */
export interface SnippetStorage {
  save(name: string, snippet: StoredSnippet): Promise<void>;
  get(name: string): Promise<StoredSnippet | undefined>;
  /** Sorted by name. */
  list(): Promise<SnippetSummary[]>;
  /** True when a snippet was deleted, false when there was none. */
  delete(name: string): Promise<boolean>;
}

export const SNIPPET_FILE_SUFFIX = '.json';

export function serializeSnippet(snippet: StoredSnippet): string {
  return JSON.stringify(snippet);
}

/** Parses a stored snippet document; throws when it is not one. */
export function parseStoredSnippet(text: string, where: string): StoredSnippet {
  const value: unknown = JSON.parse(text);
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof (value as StoredSnippet).name !== 'string' ||
    typeof (value as StoredSnippet).content !== 'string' ||
    typeof (value as StoredSnippet).savedAt !== 'string'
  ) {
    throw new Error(`${where} is not a stored snippet`);
  }
  return value as StoredSnippet;
}

export function summarize(snippet: StoredSnippet): SnippetSummary {
  return { name: snippet.name, savedAt: snippet.savedAt, sizeBytes: Buffer.byteLength(snippet.content, 'utf8') };
}

export function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
