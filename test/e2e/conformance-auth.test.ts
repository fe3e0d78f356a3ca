import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Harness, startHarness } from '../support/gateway-harness.ts';
import { type BrowserPage, createHeadlessBrowser, signInAtDevIdp } from '../support/headless-browser.ts';
import { registerClient } from '../support/oauth-steps.ts';
import { freePort } from '../support/ports.ts';

/**
 * `@modelcontextprotocol/conformance authorization` against the running gateway.
 *
 * How the CLI drives the authorize step (read from its dist code, 0.2.0-alpha.12):
 * `authorization-code-grant` listens on http://127.0.0.1:<--port>/callback, prints the authorize
 * URL after "Access the following URL in your browser", and waits up to 5 minutes for a browser
 * to land on the callback. It then redeems the code at the token endpoint with PKCE and the
 * `resource`. It reads the token endpoint from the metadata found by the previous scenario, so
 * both scenarios run in one invocation (no `--scenario`, which would run the grant alone and fail).
 * Our glue is the "browser": it follows the printed URL with the headless browser, allows the
 * consent page, signs in at the dev IdP, and delivers the final redirect to the CLI's callback.
 */

const CLI = fileURLToPath(new URL('../../node_modules/@modelcontextprotocol/conformance/dist/index.js', import.meta.url));
const CLI_TIMEOUT_MS = 60_000;

interface Check {
  id: string;
  status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'SKIPPED' | 'INFO';
  errorMessage?: string;
  details?: Record<string, unknown>;
}

interface CliRun {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** The authorize URL the CLI printed, and where our browser returned to. */
  authorizeUrl?: URL;
  returnedTo?: URL;
  glueError?: unknown;
}

describe('MCP conformance suite: authorization server scenarios', () => {
  let gateway: Harness;
  let outputDir: string;
  before(async () => {
    gateway = await startHarness();
    outputDir = await mkdtemp(join(tmpdir(), 'mcpgw-conformance-'));
  });
  after(async () => {
    await gateway?.close();
    if (outputDir) await rm(outputDir, { recursive: true, force: true });
  });

  it('authorization-server-metadata-endpoint and authorization-code-grant pass', { timeout: CLI_TIMEOUT_MS + 10_000 }, async () => {
    const port = await freePort();
    const callback = `http://127.0.0.1:${port}/callback`;
    const clientId = await registerClient(gateway.publicUrl, { client_name: 'Conformance Suite', redirect_uris: [callback] });

    const run = await runConformance(
      ['authorization', '--url', gateway.publicUrl, '--client-id', clientId, '--resource', gateway.mcpUrl, '--port', String(port), '--output-dir', outputDir],
      (authorizeUrl, callbackReady) => signInAndApprove(authorizeUrl, callback, callbackReady),
    );
    const transcript = `exit ${run.exitCode}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
    assert.equal(run.glueError, undefined, `driving the authorize step failed: ${String(run.glueError)}\n${transcript}`);

    // The CLI asked for our authorization endpoint with PKCE S256 and the resource.
    assert.equal(run.authorizeUrl?.origin + (run.authorizeUrl?.pathname ?? ''), `${gateway.publicUrl}/authorize`);
    assert.equal(run.authorizeUrl?.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(run.authorizeUrl?.searchParams.get('resource'), gateway.mcpUrl);
    assert.equal(run.authorizeUrl?.searchParams.get('redirect_uri'), callback);
    // RFC 9207: the gateway's redirect carries iss.
    assert.equal(run.returnedTo?.searchParams.get('iss'), gateway.publicUrl);

    // The results the CLI wrote, one folder per scenario: authorization-server-<scenario>-<timestamp>/checks.json.
    const checks = await readChecks(outputDir);
    assert.deepEqual(Object.keys(checks).sort(), ['authorization-code-grant', 'authorization-server-metadata-endpoint'], transcript);
    assert.deepEqual(
      checks['authorization-server-metadata-endpoint']?.map((c) => [c.id, c.status, c.errorMessage]),
      [
        ['authorization-server-metadata', 'SUCCESS', undefined],
        ['authorization-server-metadata-cimd', 'SUCCESS', undefined],
      ],
      transcript,
    );
    assert.deepEqual(
      checks['authorization-code-grant']?.map((c) => [c.id, c.status, c.errorMessage]),
      [['authorization-code-grant', 'SUCCESS', undefined]],
      transcript,
    );
    const grant = checks['authorization-code-grant']?.[0]?.details as { body?: { token_type?: string; access_token?: string } };
    assert.equal(grant.body?.token_type, 'Bearer');
    assert.match(grant.body?.access_token ?? '', /^mcpg/, 'redacted access token keeps the gateway prefix');

    // Exit code and summary agree with the files.
    assert.match(run.stdout, /✓ authorization-server-metadata-endpoint: 2 passed, 0 failed/);
    assert.match(run.stdout, /✓ authorization-code-grant: 1 passed, 0 failed/);
    assert.match(run.stdout, /Total: 3 passed, 0 failed/);
    assert.equal(run.exitCode, 0, transcript);
  });

  /** Consent (allow) then the dev IdP sign-in, until the gateway redirects to the CLI's callback; then land there. */
  async function signInAndApprove(start: URL, callback: string, callbackReady: Promise<void>): Promise<URL> {
    const browser = createHeadlessBrowser();
    const atCallback = (location: URL) => location.href.startsWith(callback);
    let page: BrowserPage = await browser.get(start, { stopAt: atCallback });
    for (let step = 0; step < 6 && !page.stoppedAt; step++) {
      if (page.body.includes('name="decision"')) page = await browser.submitForm(page, 'action="/consent"', { decision: 'allow' }, { stopAt: atCallback });
      else if (page.body.includes('name="password"')) page = await signInAtDevIdp(browser, page, 'alice', 'alice-password', { stopAt: atCallback });
      else throw new Error(`stuck at ${page.url} (${page.status}): ${page.body.slice(0, 300)}`);
    }
    if (!page.stoppedAt) throw new Error('the gateway never redirected to the callback');
    await callbackReady;
    const landed = await fetch(page.stoppedAt);
    assert.equal(landed.status, 200, 'the CLI callback server accepted the redirect');
    await landed.body?.cancel();
    return page.stoppedAt;
  }
});

/**
 * Runs the CLI with this Node (24); when it prints the authorize URL, `authorize` plays the browser
 * (`callbackReady` settles once the CLI reports its callback server listening).
 */
function runConformance(args: string[], authorize: (url: URL, callbackReady: Promise<void>) => Promise<URL>): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    const run: CliRun = { exitCode: null, stdout: '', stderr: '' };
    const killer = setTimeout(() => child.kill('SIGKILL'), CLI_TIMEOUT_MS);
    let glue: Promise<void> = Promise.resolve();
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      run.stderr += chunk;
    });
    let expectUrl = false;
    let callbackListening = () => {};
    const callbackReady = new Promise<void>((ready) => {
      callbackListening = ready;
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      run.stdout += `${line}\n`;
      if (line.startsWith('Callback server started:')) callbackListening();
      else if (line.startsWith('Access the following URL')) expectUrl = true;
      else if (expectUrl && line.trim()) {
        expectUrl = false;
        run.authorizeUrl = new URL(line.trim());
        glue = authorize(run.authorizeUrl, callbackReady).then(
          (returnedTo) => {
            run.returnedTo = returnedTo;
          },
          (error: unknown) => {
            run.glueError = error;
            child.kill('SIGTERM'); // otherwise the CLI waits 5 minutes for a callback
          },
        );
      }
    });
    child.once('error', (error) => {
      clearTimeout(killer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(killer);
      run.exitCode = code ?? (signal ? -1 : null);
      void glue.then(() => resolve(run));
    });
  });
}

async function readChecks(dir: string): Promise<Record<string, Check[]>> {
  const byScenario: Record<string, Check[]> = {};
  for (const entry of await readdir(dir)) {
    const scenario = /^authorization-server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(entry)?.[1];
    if (!scenario) continue;
    byScenario[scenario] = JSON.parse(await readFile(join(dir, entry, 'checks.json'), 'utf8')) as Check[];
  }
  return byScenario;
}
