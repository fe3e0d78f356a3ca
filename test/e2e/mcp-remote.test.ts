import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { RunningSnippetsServer } from '../../servers/snippets/http.ts';
import type { Harness } from '../support/gateway-harness.ts';
import { createHeadlessBrowser, signInAtDevIdp } from '../support/headless-browser.ts';
import { freePort } from '../support/ports.ts';
import { startSnippetsBehindGateway } from '../support/snippets-gateway.ts';

type StoredTokens = { access_token: string; refresh_token?: string };
type ToolResult = { content: { type: string; text: string }[]; isError?: boolean };

const SNIPPETS_TOOLS = ['delete_snippet', 'get_snippet', 'hello_mcp', 'list_snippets', 'save_snippet'];
/** What mcp-remote prints on stderr when it wants the user's browser (its src/lib/node-oauth-client-provider.ts). */
const AUTHORIZE_PROMPT = /Please authorize this client by visiting:\n(\S+)\n/;

/** The `mcp-remote` command as its package declares it (bin), run with this test's own Node. */
function mcpRemoteEntry(): string {
  const require = createRequire(import.meta.url);
  const manifestPath = require.resolve('mcp-remote/package.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { version: string; bin: Record<string, string> };
  assert.equal(manifest.version, '0.15.1', 'the pinned mcp-remote');
  return join(dirname(manifestPath), manifest.bin['mcp-remote']!);
}

/** Accumulates a child's stderr and lets the test wait for a line. */
function watchOutput(stream: Readable | null) {
  let text = '';
  const waiters = new Set<() => void>();
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    text += chunk;
    for (const wake of waiters) wake();
  });
  return {
    text: () => text,
    /** Resolves when the output matches; rejects after `timeoutMs` if given, else may never settle. */
    waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = text.match(pattern);
          if (!match) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(match);
        };
        const timer =
          timeoutMs === undefined
            ? undefined
            : setTimeout(() => {
                waiters.delete(check);
                reject(new Error(`no ${pattern} on mcp-remote's stderr within ${timeoutMs} ms:\n${text}`));
              }, timeoutMs).unref(); // the child's pipes keep the process alive while it matters
        waiters.add(check);
        check();
      });
    },
  };
}

/**
 * mcp-remote, the npm stdio↔remote bridge Claude Desktop-style configs run (`npx mcp-remote <url>`),
 * driven by the official SDK client over stdio exactly as such a host drives it. It signs in
 * through the gateway by itself (401 → PRM → AS metadata → DCR → authorize → token); the test only
 * plays the user's browser.
 */
describe('mcp-remote signs in through the gateway and bridges the snippets tools', { timeout: 60_000 }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mcpgw-remote-data-'));
  // mcp-remote keeps client registration and tokens under MCP_REMOTE_CONFIG_DIR (default ~/.mcp-auth).
  const configDir = mkdtempSync(join(tmpdir(), 'mcpgw-remote-auth-'));
  // The child's whole PATH: an empty directory. mcp-remote launches a browser through the `open`
  // package (its bundled xdg-open script) and then /usr/bin/xdg-open, gio, x-www-browser and
  // sensible-browser; every one of those finds browsers by name on PATH, so none can start one here.
  const emptyPath = mkdtempSync(join(tmpdir(), 'mcpgw-remote-nobin-'));
  const sseConfigDir = mkdtempSync(join(tmpdir(), 'mcpgw-remote-auth-sse-'));
  const entry = mcpRemoteEntry();
  const transports: StdioClientTransport[] = [];
  let gateway: Harness;
  let snippets: RunningSnippetsServer;
  let callbackPort: number;
  /** Where mcp-remote asks the gateway to send the browser back: its callback server (host localhost). */
  let redirectUri: string;

  before(async () => {
    callbackPort = await freePort();
    redirectUri = `http://localhost:${callbackPort}/oauth/callback`;
    ({ gateway, snippets } = await startSnippetsBehindGateway(dataDir));
  });

  after(async () => {
    await Promise.all(transports.map((t) => t.close()));
    await gateway?.close();
    await snippets?.close();
    for (const dir of [dataDir, configDir, emptyPath, sseConfigDir]) rmSync(dir, { recursive: true, force: true });
  });

  function startMcpRemote(options: { url?: string; configDir?: string; args?: string[] } = {}) {
    const dir = options.configDir ?? configDir;
    const transport = new StdioClientTransport({
      command: process.execPath,
      // As a Claude Desktop config runs it (`npx mcp-remote <url>`), plus an explicit callback port so
      // the redirect URI is known. No --allow-http: mcp-remote 0.15.1 accepts http:// for localhost.
      args: [entry, options.url ?? gateway.mcpUrl, String(callbackPort), ...(options.args ?? [])],
      env: { PATH: emptyPath, HOME: dir, MCP_REMOTE_CONFIG_DIR: dir },
      stderr: 'pipe',
    });
    transports.push(transport);
    const output = watchOutput(transport.stderr as Readable | null);
    const client = new Client({ name: 'mcp-remote-e2e', version: '1.0.0' });
    return { transport, output, client, connected: client.connect(transport) };
  }

  it('signs in headless on the first run, reuses the stored tokens, and refreshes a revoked one', async () => {
    const first = startMcpRemote();
    const params = await signInAsBob(first);
    await first.connected;
    await checkTools(first.client);
    const saved = (await first.client.callTool({ name: 'save_snippet', arguments: { snippetname: 'via-remote', snippet: 'echo bridged' } })) as ToolResult;
    assert.deepEqual(saved.content, [{ type: 'text', text: 'Saved snippet "via-remote" (12 bytes).' }]);
    assert.equal(saved.isError, undefined);
    const got = (await first.client.callTool({ name: 'get_snippet', arguments: { snippetname: 'via-remote' } })) as ToolResult;
    assert.equal(got.content.length, 2);
    assert.deepEqual(got.content[0], { type: 'text', text: 'echo bridged' });
    assert.match(got.content[1]!.text, /^\(snippet "via-remote", saved by Bob Builder <bob@example\.com> at \d{4}-\d\d-\d\dT[\d:.]+Z\)$/);
    await first.client.close();

    // mcp-remote registered itself by DCR (RFC 7591) as a public client and kept the gateway's answer.
    const registered = storedFile<{ client_id: string; redirect_uris: string[]; token_endpoint_auth_method: string; client_secret?: string }>(
      'client_info.json',
    );
    assert.equal(registered.client_id, params.get('client_id'));
    assert.deepEqual(registered.redirect_uris, [redirectUri]);
    assert.equal(registered.token_endpoint_auth_method, 'none');
    assert.equal(registered.client_secret, undefined);
    const stored = storedFile<StoredTokens>('tokens.json');
    assert.match(stored.access_token, /\S/);
    assert.match(stored.refresh_token ?? '', /\S/, 'a refresh token was issued');

    // Second run, same config dir: the stored tokens are used; no sign-in is asked for.
    const second = startMcpRemote();
    await connectedWithoutSignIn(second);
    await checkTools(second.client);
    const again = (await second.client.callTool({ name: 'get_snippet', arguments: { snippetname: 'via-remote' } })) as ToolResult;
    assert.deepEqual(again.content[0], { type: 'text', text: 'echo bridged' });
    await second.client.close();
    assert.equal(storedFile<StoredTokens>('tokens.json').access_token, stored.access_token, 'the stored access token was reused');

    // Third run, after the gateway revoked that access token (RFC 7009): mcp-remote's first request
    // is refused with 401, and it renews with the stored refresh token instead of a new sign-in.
    const revoked = await fetch(`${gateway.publicUrl}/revoke`, {
      method: 'POST',
      body: new URLSearchParams({ token: stored.access_token, token_type_hint: 'access_token', client_id: params.get('client_id')! }),
    });
    assert.equal(revoked.status, 200);
    const refused = await fetch(gateway.mcpUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${stored.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    assert.equal(refused.status, 401);
    assert.match(refused.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    const third = startMcpRemote();
    await connectedWithoutSignIn(third);
    await checkTools(third.client);
    await third.client.close();
    const renewed = storedFile<StoredTokens>('tokens.json');
    assert.notEqual(renewed.access_token, stored.access_token, 'a new access token');
    assert.notEqual(renewed.refresh_token, stored.refresh_token, 'the refresh token was rotated');
  });

  it('bridges the legacy HTTP+SSE endpoint with --transport sse-only', async () => {
    // Its own config dir: a new sign-in, as for a second server entry in the host's config.
    const run = startMcpRemote({ url: `${gateway.publicUrl}/mcp/sse`, configDir: sseConfigDir, args: ['--transport', 'sse-only'] });
    // The SSE URL is served under the /mcp resource (its PRM), so that is the resource asked for.
    await signInAsBob(run, gateway.mcpUrl);
    await run.connected;
    await checkTools(run.client);
    const saved = (await run.client.callTool({ name: 'save_snippet', arguments: { snippetname: 'via-sse', snippet: 'ls -la' } })) as ToolResult;
    assert.deepEqual(saved.content, [{ type: 'text', text: 'Saved snippet "via-sse" (6 bytes).' }]);
    const got = (await run.client.callTool({ name: 'get_snippet', arguments: { snippetname: 'via-sse' } })) as ToolResult;
    assert.deepEqual(got.content[0], { type: 'text', text: 'ls -la' });
    assert.match(got.content[1]!.text, /^\(snippet "via-sse", saved by Bob Builder <bob@example\.com> at /);
    await run.client.close();
    assert.match(run.output.text(), /Connected to remote server using SSEClientTransport/);
  });

  /**
   * Plays the user's browser for a run that is waiting to sign in: reads the authorization URL
   * mcp-remote printed, consents at the gateway, signs in at the dev IdP as bob, and lets the
   * redirect reach mcp-remote's own callback server. Resolves with the authorization request.
   */
  async function signInAsBob(run: ReturnType<typeof startMcpRemote>, resource = gateway.mcpUrl): Promise<URLSearchParams> {
    // A child that dies before printing the URL fails the wait through `connected`, with its output.
    const [, printed] = await Promise.race([
      run.output.waitFor(AUTHORIZE_PROMPT, 20_000),
      run.connected.then(
        () => assert.fail(`connected without signing in:\n${run.output.text()}`),
        (error: unknown) => assert.fail(`mcp-remote failed before asking for sign-in: ${error}\n${run.output.text()}`),
      ),
    ]);
    const authorizeUrl = new URL(printed!);
    assert.equal(`${authorizeUrl.origin}${authorizeUrl.pathname}`, `${gateway.publicUrl}/authorize`);
    const params = authorizeUrl.searchParams;
    assert.equal(params.get('response_type'), 'code');
    assert.equal(params.get('redirect_uri'), redirectUri);
    assert.equal(params.get('code_challenge_method'), 'S256');
    assert.match(params.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.equal(params.get('resource'), resource);
    assert.ok(params.get('client_id'), 'registered before authorizing');
    assert.ok(params.get('state'));

    // The user's browser: consent at the gateway, sign-in at the dev IdP, back to mcp-remote's callback.
    const browser = createHeadlessBrowser();
    const stopAt = (location: URL) => location.href.startsWith(redirectUri);
    let page = await browser.get(authorizeUrl, { stopAt });
    for (let step = 0; step < 6 && !page.stoppedAt; step++) {
      if (page.body.includes('name="decision"')) {
        page = await browser.submitForm(page, 'action="/consent"', { decision: 'allow' }, { stopAt });
      } else if (page.body.includes('name="password"')) {
        page = await signInAtDevIdp(browser, page, 'bob', 'bob-password', { stopAt });
      } else {
        assert.fail(`sign-in stuck at ${page.url} (HTTP ${page.status}): ${page.body.slice(0, 300)}`);
      }
    }
    const callback = page.stoppedAt;
    assert.ok(callback, 'the gateway redirected back to mcp-remote');
    assert.ok(callback.searchParams.get('code'));
    assert.equal(callback.searchParams.get('state'), params.get('state'));
    assert.equal(callback.searchParams.get('iss'), gateway.publicUrl);
    // Deliver the code the way the browser would: mcp-remote's own callback server takes it.
    const landed = await browser.get(callback);
    assert.equal(landed.status, 200);
    assert.match(landed.body, /Authorization successful/);

    return params;
  }

  /** Connects a later run, failing at once (not at mcp-remote's 30 s auth timeout) if it asks for a sign-in. */
  async function connectedWithoutSignIn(run: ReturnType<typeof startMcpRemote>): Promise<void> {
    await Promise.race([
      run.connected,
      run.output.waitFor(AUTHORIZE_PROMPT).then(() => assert.fail(`asked for a new sign-in:\n${run.output.text()}`)),
    ]);
    assert.doesNotMatch(run.output.text(), /authorize this client/i);
  }

  async function checkTools(client: Client): Promise<void> {
    const tools = await client.listTools();
    assert.deepEqual(tools.tools.map((t) => t.name).sort(), SNIPPETS_TOOLS);
  }

  /** A file mcp-remote keeps per server (its name is prefixed with a hash of the URL and flags). */
  function storedFile<T>(suffix: string): T {
    const files = readdirSync(configDir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith(suffix));
    assert.equal(files.length, 1, `one ${suffix} in ${configDir}: ${files.join(', ')}`);
    return JSON.parse(readFileSync(join(configDir, files[0]!), 'utf8')) as T;
  }
});
