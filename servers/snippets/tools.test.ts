import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startAzurite } from '../../test/support/azurite.ts';
import { createBlobStorage } from './blob-storage.ts';
import { createFolderStorage } from './folder-storage.ts';
import type { CallerIdentity } from './identity.ts';
import { NAME_RULE } from './names.ts';
import { createSnippetsMcpServer } from './server.ts';
import type { SnippetStorage } from './storage.ts';

const FIXED_NOW = new Date('2025-06-01T12:00:00.000Z');
const ADA: CallerIdentity = {
  sub: 'sub-ada',
  oid: '00000000-0000-0000-0000-0000000000ad',
  tid: '11111111-1111-1111-1111-111111111111',
  name: 'Ada Lovelace',
  email: 'ada@example.com',
  preferred_username: 'ada@example.com',
  roles: ['Snippets.Write'],
};

/** An SDK client wired to a fresh server in memory; `identity` plays the part of the HTTP layer's authInfo. */
async function connect(storage: SnippetStorage, identity?: CallerIdentity, maxSnippetBytes?: number) {
  const server = createSnippetsMcpServer({
    storage,
    now: () => FIXED_NOW,
    ...(maxSnippetBytes !== undefined ? { maxSnippetBytes } : {}),
  });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  if (identity) {
    const authInfo: AuthInfo = { token: 'assertion', clientId: '', scopes: [], extra: { identity } };
    const send = clientSide.send.bind(clientSide);
    clientSide.send = (message, options) => send(message, { ...options, authInfo });
  }
  const client = new Client({ name: 'tools-test', version: '1.0.0' });
  await server.connect(serverSide);
  await client.connect(clientSide);
  return {
    call: (name: string, args?: Record<string, unknown>) =>
      client.callTool({ name, ...(args ? { arguments: args } : {}) }) as Promise<CallToolResult>,
    close: async () => {
      await client.close();
      await server.close();
    },
  };
}

function texts(result: CallToolResult): string[] {
  return result.content.map((item) => (item.type === 'text' ? item.text : `<${item.type}>`));
}

function assertToolError(result: CallToolResult, message: string): void {
  assert.equal(result.isError, true, `expected an error result, got ${JSON.stringify(result)}`);
  assert.deepEqual(texts(result), [message]);
}

const invalidArgs = (tool: string, message: string) =>
  `MCP error -32602: Input validation error: Invalid arguments for tool ${tool}: ${message}`;

const badNames: Array<[name: string, message: string]> = [
  ['', `Snippet name is empty: use ${NAME_RULE}`],
  ['.', `Snippet name "." is not allowed: use ${NAME_RULE}`],
  ['..', `Snippet name ".." is not allowed: use ${NAME_RULE}`],
  ['../escape', `Snippet name "../escape" is invalid: use ${NAME_RULE}`],
  ['dir/name', `Snippet name "dir/name" is invalid: use ${NAME_RULE}`],
  ['has space', `Snippet name "has space" is invalid: use ${NAME_RULE}`],
  ['n'.repeat(129), 'Snippet name is 129 characters long; the limit is 128'],
];

function toolSuite(label: string, open: () => Promise<{ storage: SnippetStorage; cleanup: () => Promise<void> }>) {
  describe(`snippets tools over ${label} storage`, () => {
    let storage: SnippetStorage;
    let cleanup: () => Promise<void>;
    let anonymous: Awaited<ReturnType<typeof connect>>;
    let ada: Awaited<ReturnType<typeof connect>>;

    before(async () => {
      ({ storage, cleanup } = await open());
      anonymous = await connect(storage);
      ada = await connect(storage, ADA);
    });
    after(async () => {
      await anonymous.close();
      await ada.close();
      await cleanup();
    });

    it('hello_mcp greets the caller by name when known', async () => {
      const tail = 'I am the snippets MCP server: save_snippet, get_snippet, list_snippets and delete_snippet keep text snippets for you.';
      assert.deepEqual(await anonymous.call('hello_mcp'), { content: [{ type: 'text', text: `Hello! ${tail}` }] });
      assert.deepEqual(await ada.call('hello_mcp'), { content: [{ type: 'text', text: `Hello, Ada Lovelace! ${tail}` }] });
    });

    it('list_snippets is empty at first', async () => {
      const result = await anonymous.call('list_snippets');
      assert.deepEqual(texts(result), ['No snippets saved yet.']);
      assert.deepEqual(result.structuredContent, { snippets: [] });
    });

    it('save_snippet then get_snippet returns the content and records who saved it and when', async () => {
      const saved = await ada.call('save_snippet', { snippetname: 'greeting.txt', snippet: 'héllo wörld' });
      assert.deepEqual(saved, { content: [{ type: 'text', text: 'Saved snippet "greeting.txt" (13 bytes).' }] });

      const got = await anonymous.call('get_snippet', { snippetname: 'greeting.txt' });
      assert.equal(got.isError, undefined);
      assert.deepEqual(texts(got), [
        'héllo wörld',
        '(snippet "greeting.txt", saved by Ada Lovelace <ada@example.com> at 2025-06-01T12:00:00.000Z)',
      ]);
      assert.deepEqual(got.structuredContent, {
        name: 'greeting.txt',
        content: 'héllo wörld',
        savedAt: '2025-06-01T12:00:00.000Z',
        savedBy: { sub: 'sub-ada', name: 'Ada Lovelace', email: 'ada@example.com', oid: ADA.oid, tid: ADA.tid },
      });
    });

    it('a save without a known identity records no author', async () => {
      await anonymous.call('save_snippet', { snippetname: 'anon', snippet: 'x' });
      const got = await anonymous.call('get_snippet', { snippetname: 'anon' });
      assert.deepEqual(got.structuredContent, { name: 'anon', content: 'x', savedAt: '2025-06-01T12:00:00.000Z' });
      assert.equal(texts(got)[1], '(snippet "anon", saved by an unknown user at 2025-06-01T12:00:00.000Z)');
    });

    it('a second save replaces the snippet and its author', async () => {
      await anonymous.call('save_snippet', { snippetname: 'greeting.txt', snippet: 'v2' });
      const got = await anonymous.call('get_snippet', { snippetname: 'greeting.txt' });
      assert.deepEqual(got.structuredContent, { name: 'greeting.txt', content: 'v2', savedAt: '2025-06-01T12:00:00.000Z' });
    });

    it('list_snippets lists names sorted, with size and time', async () => {
      const result = await anonymous.call('list_snippets');
      assert.deepEqual(result.structuredContent, {
        snippets: [
          { name: 'anon', savedAt: '2025-06-01T12:00:00.000Z', sizeBytes: 1 },
          { name: 'greeting.txt', savedAt: '2025-06-01T12:00:00.000Z', sizeBytes: 2 },
        ],
      });
      assert.deepEqual(texts(result), [
        'anon (1 bytes, saved 2025-06-01T12:00:00.000Z)\ngreeting.txt (2 bytes, saved 2025-06-01T12:00:00.000Z)',
      ]);
    });

    it('delete_snippet deletes; a second delete and a get report the unknown snippet', async () => {
      assert.deepEqual(await anonymous.call('delete_snippet', { snippetname: 'anon' }), {
        content: [{ type: 'text', text: 'Deleted snippet "anon".' }],
      });
      const unknown = 'No snippet named "anon". Use list_snippets to see the saved names.';
      assertToolError(await anonymous.call('delete_snippet', { snippetname: 'anon' }), unknown);
      assertToolError(await anonymous.call('get_snippet', { snippetname: 'anon' }), unknown);
      assert.deepEqual(
        ((await anonymous.call('list_snippets')).structuredContent as { snippets: Array<{ name: string }> }).snippets.map((s) => s.name),
        ['greeting.txt'],
      );
    });

    for (const [name, message] of badNames) {
      it(`refuses the name ${JSON.stringify(name.slice(0, 20))} in every tool`, async () => {
        assertToolError(await ada.call('save_snippet', { snippetname: name, snippet: 'x' }), message);
        assertToolError(await ada.call('get_snippet', { snippetname: name }), message);
        assertToolError(await ada.call('delete_snippet', { snippetname: name }), message);
      });
    }

    it('refuses missing or mistyped arguments', async () => {
      const missingName = invalidArgs('save_snippet', 'Missing "snippetname": pass the snippet\'s name at snippetname');
      assertToolError(await ada.call('save_snippet', { snippet: 'x' }), missingName);
      assertToolError(
        await ada.call('save_snippet', { snippetname: 'a' }),
        invalidArgs('save_snippet', 'Missing "snippet": pass the text to save at snippet'),
      );
      assertToolError(
        await ada.call('save_snippet', { snippetname: 'a', snippet: 42 }),
        invalidArgs('save_snippet', '"snippet" must be a string at snippet'),
      );
      assertToolError(
        await ada.call('get_snippet', {}),
        invalidArgs('get_snippet', 'Missing "snippetname": pass the snippet\'s name at snippetname'),
      );
      assertToolError(
        await ada.call('delete_snippet', { snippetname: 7 }),
        invalidArgs('delete_snippet', '"snippetname" must be a string at snippetname'),
      );
    });

    it('refuses empty content and content over 1 MiB, and keeps what was saved before', async () => {
      assertToolError(
        await ada.call('save_snippet', { snippetname: 'greeting.txt', snippet: '' }),
        'Snippet content is empty: pass the text to save in "snippet"',
      );
      assertToolError(
        await ada.call('save_snippet', { snippetname: 'greeting.txt', snippet: 'x'.repeat(1024 * 1024 + 1) }),
        'Snippet content is 1048577 bytes (UTF-8); the limit is 1048576 bytes',
      );
      const got = await ada.call('get_snippet', { snippetname: 'greeting.txt' });
      assert.equal(texts(got)[0], 'v2');
      // Exactly 1 MiB is allowed.
      const max = await ada.call('save_snippet', { snippetname: 'big', snippet: 'b'.repeat(1024 * 1024) });
      assert.deepEqual(texts(max), ['Saved snippet "big" (1048576 bytes).']);
      assert.equal(texts(await ada.call('get_snippet', { snippetname: 'big' }))[0]?.length, 1024 * 1024);
    });

    it('applies a configured content limit in UTF-8 bytes', async () => {
      const small = await connect(storage, undefined, 10);
      try {
        assertToolError(
          await small.call('save_snippet', { snippetname: 'small', snippet: 'é'.repeat(6) }),
          'Snippet content is 12 bytes (UTF-8); the limit is 10 bytes',
        );
        assert.deepEqual(texts(await small.call('save_snippet', { snippetname: 'small', snippet: 'é'.repeat(5) })), [
          'Saved snippet "small" (10 bytes).',
        ]);
      } finally {
        await small.close();
      }
    });

    it('20 concurrent saves of one name: the last writer wins whole, never a torn snippet', async () => {
      const contents = Array.from({ length: 20 }, (_, i) => String.fromCharCode(65 + i).repeat(200_000 + i));
      const results = await Promise.all(contents.map((snippet) => ada.call('save_snippet', { snippetname: 'race', snippet })));
      for (const result of results) assert.equal(result.isError, undefined, JSON.stringify(result).slice(0, 200));
      const got = await ada.call('get_snippet', { snippetname: 'race' });
      const content = texts(got)[0]!;
      assert.ok(contents.includes(content), `torn snippet: ${content.length} chars starting ${content.slice(0, 5)}`);
      const listed = ((await ada.call('list_snippets')).structuredContent as { snippets: Array<{ name: string; sizeBytes: number }> })
        .snippets;
      assert.deepEqual(listed.find((s) => s.name === 'race'), { name: 'race', savedAt: '2025-06-01T12:00:00.000Z', sizeBytes: content.length });
    });
  });
}

toolSuite('folder', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'snippets-folder-'));
  return {
    storage: await createFolderStorage(join(dir, 'data', 'snippets')),
    cleanup: async () => {
      // Atomic writes leave no temp files behind, even after the concurrent saves.
      const left = (await readdir(join(dir, 'data', 'snippets'))).sort();
      assert.deepEqual(left, ['big.json', 'greeting.txt.json', 'race.json', 'small.json']);
      await rm(dir, { recursive: true, force: true });
    },
  };
});

toolSuite('Azure Blob (Azurite)', async () => {
  const azurite = await startAzurite();
  try {
    return { storage: await createBlobStorage({ connectionString: azurite.connectionString }), cleanup: azurite.stop };
  } catch (error) {
    await azurite.stop();
    throw error;
  }
});

describe('storage failures', () => {
  it('become a generic tool error, never a crash or a leaked cause', async () => {
    const failing: SnippetStorage = {
      save: () => Promise.reject(new Error('disk on fire at /secret/path')),
      get: () => Promise.reject(new Error('disk on fire at /secret/path')),
      list: () => Promise.reject(new Error('disk on fire at /secret/path')),
      delete: () => Promise.reject(new Error('disk on fire at /secret/path')),
    };
    const session = await connect(failing);
    try {
      assertToolError(
        await session.call('save_snippet', { snippetname: 'a', snippet: 'x' }),
        'Storage failed while saving snippet "a"; try again later',
      );
      assertToolError(await session.call('get_snippet', { snippetname: 'a' }), 'Storage failed while reading snippet "a"; try again later');
      assertToolError(await session.call('list_snippets'), 'Storage failed while listing snippets; try again later');
      assertToolError(await session.call('delete_snippet', { snippetname: 'a' }), 'Storage failed while deleting snippet "a"; try again later');
    } finally {
      await session.close();
    }
  });
});
