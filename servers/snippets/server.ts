import { type CallToolResult, McpServer, type ServerContext, type StandardSchemaWithJSON } from '@modelcontextprotocol/server';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { CallerIdentity } from './identity.ts';
import {
  DEFAULT_MAX_SNIPPET_BYTES,
  NAME_RULE,
  SNIPPET_NAME_MAX_CHARS,
  SNIPPET_NAME_PATTERN,
  snippetContentProblem,
  snippetNameProblem,
} from './names.ts';
import type { SnippetAuthor, SnippetStorage, StoredSnippet } from './storage.ts';

export const SERVER_NAME = 'snippets';
export const SERVER_VERSION = '0.1.0';

export interface SnippetsServerOptions {
  storage: SnippetStorage;
  /** UTF-8 bytes; default 1 MiB. */
  maxSnippetBytes?: number;
  logger?: Logger;
  /** Clock for `savedAt`; tests may inject one. */
  now?: () => Date;
}

/** What the HTTP layer puts in `authInfo.extra` for each request (see http.ts). */
export interface SnippetsAuthExtra {
  identity?: CallerIdentity;
}

/**
 * The validation of names and sizes happens in the tools (not in the zod schemas), so every bad
 * input gets the same precise message from names.ts. The schemas still advertise the rules
 * (pattern, lengths) in the JSON Schema a model sees.
 */
const snippetName = z
  .string({ error: (issue) => (issue.input === undefined ? 'Missing "snippetname": pass the snippet\'s name' : '"snippetname" must be a string') })
  .meta({ pattern: SNIPPET_NAME_PATTERN, minLength: 1, maxLength: SNIPPET_NAME_MAX_CHARS })
  .describe(`Name of the snippet: ${NAME_RULE}, e.g. "todo-list" or "deploy.sh". Case-sensitive.`);

const nameArguments = z.object({ snippetname: snippetName });
const saveArguments = z.object({
  snippetname: snippetName,
  snippet: z
    .string({ error: (issue) => (issue.input === undefined ? 'Missing "snippet": pass the text to save' : '"snippet" must be a string') })
    .meta({ minLength: 1 })
    .describe('The text to save, e.g. a code fragment, a command or a note.'),
});

/**
 * The JSON Schema of `schema` for `tools/list`, with a validator that accepts anything: the tool
 * checks its own arguments (see `checked`), so its refusals read as they always have.
 */
function advertised<T extends z.ZodObject>(schema: T): StandardSchemaWithJSON<z.input<T>, z.input<T>> {
  const { vendor, jsonSchema } = schema['~standard'];
  return { '~standard': { version: 1, vendor, jsonSchema, validate: (value) => ({ value: value as z.input<T> }) } };
}

/**
 * Runs `run` with the arguments parsed by `schema`, or answers a tool error (MCP tools spec:
 * input errors are tool results with `isError`) worded as the v1 SDK worded them, so clients and
 * scripts that match on them keep working.
 */
function checked<T extends z.ZodObject>(
  tool: string,
  schema: T,
  run: (args: z.output<T>, ctx: ServerContext) => CallToolResult | Promise<CallToolResult>,
): (raw: z.input<T>, ctx: ServerContext) => CallToolResult | Promise<CallToolResult> {
  return (raw, ctx) => {
    const parsed = schema.safeParse(raw);
    if (parsed.success) return run(parsed.data, ctx);
    const issues = parsed.error.issues.map((issue) => (issue.path.length > 0 ? `${issue.message} at ${issue.path.join('.')}` : issue.message));
    return toolError(`MCP error -32602: Input validation error: Invalid arguments for tool ${tool}: ${issues.join('\n')}`);
  };
}

/** One McpServer per MCP session; every session shares the storage. */
export function createSnippetsMcpServer(options: SnippetsServerOptions): McpServer {
  const { storage, logger } = options;
  const maxSnippetBytes = options.maxSnippetBytes ?? DEFAULT_MAX_SNIPPET_BYTES;
  if (!Number.isSafeInteger(maxSnippetBytes) || maxSnippetBytes <= 0) {
    throw new RangeError(`maxSnippetBytes must be a positive integer, got ${maxSnippetBytes}`);
  }
  const now = options.now ?? (() => new Date());

  const server = new McpServer(
    { name: SERVER_NAME, version: SERVER_VERSION },
    {
      instructions:
        'Keeps named text snippets (notes, code, prompts) for the signed-in user and their team. ' +
        'Save with save_snippet, read with get_snippet, browse with list_snippets, remove with delete_snippet.',
    },
  );

  /** Storage failures become a tool error with a generic message; the cause is logged, not echoed. */
  async function guarded(action: string, run: () => Promise<CallToolResult>): Promise<CallToolResult> {
    try {
      return await run();
    } catch (error) {
      logger?.error({ err: error }, `storage failed while ${action}`);
      return toolError(`Storage failed while ${action}; try again later`);
    }
  }

  server.registerTool(
    'hello_mcp',
    {
      title: 'Say hello',
      description: 'Returns a greeting from the snippets server, addressed to the signed-in user when known. Use it to check the connection.',
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (ctx: ServerContext) => {
      const identity = identityOf(ctx);
      const who = identity ? displayName(identity) : undefined;
      return text(
        `Hello${who ? `, ${who}` : ''}! I am the snippets MCP server: ` +
          'save_snippet, get_snippet, list_snippets and delete_snippet keep text snippets for you.',
      );
    },
  );

  server.registerTool(
    'save_snippet',
    {
      title: 'Save snippet',
      description:
        'Saves a text snippet under a name, replacing any snippet already saved under that name. ' +
        `Content is plain text of up to ${maxSnippetBytes} bytes (UTF-8). Records who saved it and when.`,
      inputSchema: advertised(saveArguments),
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    checked('save_snippet', saveArguments, async ({ snippetname, snippet }, ctx) => {
      const problem = snippetNameProblem(snippetname) ?? snippetContentProblem(snippet, maxSnippetBytes);
      if (problem) return toolError(problem);
      const identity = identityOf(ctx);
      const stored: StoredSnippet = {
        name: snippetname,
        content: snippet,
        ...(identity ? { savedBy: authorOf(identity) } : {}),
        savedAt: now().toISOString(),
      };
      return guarded(`saving snippet "${snippetname}"`, async () => {
        await storage.save(snippetname, stored);
        return text(`Saved snippet "${snippetname}" (${Buffer.byteLength(snippet, 'utf8')} bytes).`);
      });
    }),
  );

  server.registerTool(
    'get_snippet',
    {
      title: 'Get snippet',
      description:
        'Returns the text of the snippet saved under a name, followed by who saved it and when. ' +
        'Use list_snippets to discover names.',
      inputSchema: advertised(nameArguments),
      outputSchema: z.object({
        name: z.string(),
        content: z.string(),
        savedAt: z.string().describe('ISO 8601 time of the last save'),
        savedBy: z
          .object({
            sub: z.string(),
            name: z.string().optional(),
            email: z.string().optional(),
            oid: z.string().optional(),
            tid: z.string().optional(),
          })
          .optional()
          .describe('Who saved it, when the gateway told us'),
      }),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    checked('get_snippet', nameArguments, async ({ snippetname }) => {
      const problem = snippetNameProblem(snippetname);
      if (problem) return toolError(problem);
      return guarded(`reading snippet "${snippetname}"`, async () => {
        const stored = await storage.get(snippetname);
        if (!stored) return notFound(snippetname);
        const author = stored.savedBy ? authorName(stored.savedBy) : 'an unknown user';
        return {
          content: [
            { type: 'text', text: stored.content },
            { type: 'text', text: `(snippet "${stored.name}", saved by ${author} at ${stored.savedAt})` },
          ],
          structuredContent: { ...stored },
        };
      });
    }),
  );

  server.registerTool(
    'list_snippets',
    {
      title: 'List snippets',
      description: 'Lists the names of all saved snippets, with their size and when they were last saved.',
      outputSchema: z.object({
        snippets: z.array(z.object({ name: z.string(), savedAt: z.string(), sizeBytes: z.number() })),
      }),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    () =>
      guarded('listing snippets', async () => {
        const snippets = await storage.list();
        const lines = snippets.map((s) => `${s.name} (${s.sizeBytes} bytes, saved ${s.savedAt})`);
        return {
          content: [{ type: 'text', text: lines.length > 0 ? lines.join('\n') : 'No snippets saved yet.' }],
          structuredContent: { snippets },
        };
      }),
  );

  server.registerTool(
    'delete_snippet',
    {
      title: 'Delete snippet',
      description: 'Deletes the snippet saved under a name. This cannot be undone.',
      inputSchema: advertised(nameArguments),
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    checked('delete_snippet', nameArguments, async ({ snippetname }) => {
      const problem = snippetNameProblem(snippetname);
      if (problem) return toolError(problem);
      return guarded(`deleting snippet "${snippetname}"`, async () =>
        (await storage.delete(snippetname)) ? text(`Deleted snippet "${snippetname}".`) : notFound(snippetname),
      );
    }),
  );

  return server;
}

function identityOf(ctx: ServerContext): CallerIdentity | undefined {
  return (ctx.http?.authInfo?.extra as SnippetsAuthExtra | undefined)?.identity;
}

function authorOf(identity: CallerIdentity): SnippetAuthor {
  const author: SnippetAuthor = { sub: identity.sub };
  if (identity.name) author.name = identity.name;
  if (identity.email) author.email = identity.email;
  if (identity.oid) author.oid = identity.oid;
  if (identity.tid) author.tid = identity.tid;
  return author;
}

function displayName(identity: CallerIdentity): string {
  return identity.name ?? identity.preferred_username ?? identity.email ?? identity.sub;
}

function authorName(author: SnippetAuthor): string {
  const name = author.name ?? author.sub;
  return author.email ? `${name} <${author.email}>` : name;
}

function text(message: string): CallToolResult {
  return { content: [{ type: 'text', text: message }] };
}

function toolError(message: string): CallToolResult {
  return { content: [{ type: 'text', text: message }], isError: true };
}

function notFound(name: string): CallToolResult {
  return toolError(`No snippet named "${name}". Use list_snippets to see the saved names.`);
}
