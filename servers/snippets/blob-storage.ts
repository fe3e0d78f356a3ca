import type { TokenCredential } from '@azure/identity';
import { DefaultAzureCredential } from '@azure/identity';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
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

/** The reference deployment's path is `snippets/{name}.json`: container `snippets`, blob `<name>.json`. */
export const SNIPPETS_CONTAINER = 'snippets';

export type BlobStorageOptions =
  | { connectionString: string; containerName?: string }
  /** Account URL (https://<account>.blob.core.windows.net) + DefaultAzureCredential (managed identity in Azure). */
  | { accountUrl: string; credential?: TokenCredential; containerName?: string };

/**
 * Snippets as block blobs. Each save is one Put Blob carrying the whole body, which Blob Storage
 * commits atomically: a reader sees the previous blob or the new one, never a partial one.
 * Blob metadata carries savedAt and size so list() needs one listing call, not one read per blob.
 */
export async function createBlobStorage(options: BlobStorageOptions): Promise<SnippetStorage> {
  const service =
    'connectionString' in options
      ? BlobServiceClient.fromConnectionString(options.connectionString)
      : new BlobServiceClient(options.accountUrl, options.credential ?? new DefaultAzureCredential());
  const container: ContainerClient = service.getContainerClient(options.containerName ?? SNIPPETS_CONTAINER);
  await container.createIfNotExists();

  const blobOf = (name: string) => {
    assertValidSnippetName(name);
    return container.getBlockBlobClient(name + SNIPPET_FILE_SUFFIX);
  };

  async function getSnippet(name: string): Promise<StoredSnippet | undefined> {
    const blob = blobOf(name);
    try {
      // One GET (not downloadToBuffer's ranged reads), so the body is one version of the blob.
      const response = await blob.download();
      const text = (await readAll(response.readableStreamBody)).toString('utf8');
      return parseStoredSnippet(text, `blob ${blob.name}`);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  return {
    async save(name, snippet) {
      const body = Buffer.from(serializeSnippet(snippet), 'utf8');
      await blobOf(name).upload(body, body.byteLength, {
        blobHTTPHeaders: { blobContentType: 'application/json; charset=utf-8' },
        metadata: {
          savedat: snippet.savedAt,
          sizebytes: String(Buffer.byteLength(snippet.content, 'utf8')),
        },
      });
    },

    get: getSnippet,

    async list() {
      const summaries: SnippetSummary[] = [];
      for await (const item of container.listBlobsFlat({ includeMetadata: true })) {
        if (!item.name.endsWith(SNIPPET_FILE_SUFFIX)) continue;
        const name = item.name.slice(0, -SNIPPET_FILE_SUFFIX.length);
        if (!isValidSnippetName(name)) continue;
        const savedAt = item.metadata?.['savedat'];
        const sizeBytes = item.metadata?.['sizebytes'];
        if (savedAt !== undefined && sizeBytes !== undefined) {
          summaries.push({ name, savedAt, sizeBytes: Number(sizeBytes) });
          continue;
        }
        // Written by something else (no metadata): read it. Gone meanwhile → not listed.
        const snippet = await getSnippet(name);
        if (snippet) summaries.push(summarize(snippet));
      }
      return summaries.sort(byName);
    },

    async delete(name) {
      const result = await blobOf(name).deleteIfExists();
      return result.succeeded;
    },
  };
}

async function readAll(stream: NodeJS.ReadableStream | undefined): Promise<Buffer> {
  if (!stream) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

function isNotFound(error: unknown): boolean {
  return (error as { statusCode?: unknown } | undefined)?.statusCode === 404;
}
