import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, mutableClock, startHarness } from '../support/gateway-harness.ts';
import { exchangeCode, obtainCode, postForm, redeemCode } from '../support/oauth-steps.ts';

type AuditLine = Record<string, unknown> & { seq: number; 'event.name': string };
const ROOT = new URL('../..', import.meta.url).pathname;

/** The audit trail's security events, and `mcp-entra-gateway audit verify` on the file they make. */
describe('audit trail: security events, tamper evidence', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-audit-'));
  const file = join(dir, 'audit.jsonl');
  const clock = mutableClock();
  let gw: Harness;
  let closed = false;
  before(async () => {
    gw = await startHarness({ clock, config: { audit: { sink: 'file', file: { path: file } } } });
  });
  after(async () => {
    if (!closed) await gw.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function records(clientId?: string): Promise<AuditLine[]> {
    await gw.ctx.audit.flush();
    const all = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AuditLine);
    return clientId === undefined ? all : all.filter((r) => r['oauth.client.id'] === clientId);
  }

  it('a first sign-in records consent before sign-in, the sign-in, consent as the user and the grant, with user, client and address', async () => {
    const { clientId, code, verifier } = await obtainCode(gw.publicUrl);
    await redeemCode(gw.publicUrl, { code, verifier, clientId });
    const mine = await records(clientId);
    assert.deepEqual(
      mine.map((r) => [r['event.name'], r['consent.phase'] ?? r['event.outcome'] ?? null]),
      [
        ['gateway.consent', 'before_sign_in'],
        ['gateway.sign_in', 'success'],
        ['gateway.consent', 'signed_in'],
        ['gateway.grant.issued', null],
      ],
    );
    const issued = mine.at(-1)!;
    assert.equal(issued['user.name'], 'alice');
    assert.equal(issued['user.full_name'], 'Alice Admin');
    assert.equal(issued['client.address'], '127.0.0.1');
    assert.equal(issued['oauth.scope'], 'mcp:tools');
    assert.equal(issued['oauth.resource'], gw.mcpUrl);
    assert.match(String(issued['time']), /^\d{4}-\d\d-\d\dT/);
    assert.ok(!JSON.stringify(mine).includes(code), 'never the code');
  });

  it('refresh, refresh-token reuse, code replay and revocation by client and by user are recorded; never a token', async () => {
    const first = await obtainCode(gw.publicUrl);
    const tokens = await redeemCode(gw.publicUrl, { code: first.code, verifier: first.verifier, clientId: first.clientId });
    const refresh = (token: string) => postForm(gw.publicUrl, '/token', { grant_type: 'refresh_token', refresh_token: token, client_id: first.clientId });
    const rotated = (await (await refresh(tokens.refresh_token)).json()) as { refresh_token: string; access_token: string };
    clock.advance(2);
    assert.equal((await refresh(tokens.refresh_token)).status, 400, 'reuse after the interval');
    assert.equal((await exchangeCode(gw.publicUrl, { code: first.code, verifier: first.verifier, clientId: first.clientId })).status, 400, 'code replay');

    const second = await obtainCode(gw.publicUrl, { browser: first.browser });
    const pair = await redeemCode(gw.publicUrl, { code: second.code, verifier: second.verifier, clientId: second.clientId });
    assert.equal((await postForm(gw.publicUrl, '/revoke', { token: pair.refresh_token, client_id: second.clientId })).status, 200);
    const account = await first.browser.get(`${gw.publicUrl}/account`);
    await first.browser.submitForm(account, 'action="/account/revoke"', { client_id: second.clientId });

    const events = (await records(first.clientId)).map((r) => r['event.name']);
    assert.deepEqual(events.slice(-3), ['gateway.token.refresh', 'gateway.refresh_token.reused', 'gateway.code.replayed']);
    const revocations = (await records(second.clientId)).filter((r) => r['event.name'] === 'gateway.revocation');
    assert.deepEqual(
      revocations.map((r) => [r['gateway.revoked_by'], r['oauth.token.type'] ?? r['gateway.grants_revoked']]),
      [
        ['client', 'grant'],
        ['user', 0],
      ],
    );
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    assert.match(metrics, new RegExp(`^mcpgw_audit_records_written ${readFileSync(file, 'utf8').trim().split('\n').length}$`, 'm'));
    assert.match(metrics, /^mcpgw_audit_records_dropped 0$/m);
    const text = readFileSync(file, 'utf8');
    for (const secret of [tokens.refresh_token, tokens.access_token, rotated.refresh_token, pair.refresh_token]) assert.ok(!text.includes(secret.slice(9)));
  });

  it('audit verify: the closed file is intact with the gateway JWKS; one changed byte and a removed line are named', async () => {
    const jwksFile = join(dir, 'jwks.json');
    writeFileSync(jwksFile, await (await fetch(`${gw.publicUrl}/.well-known/jwks.json`)).text());
    await gw.close(); // the last checkpoint signs the head
    closed = true;
    const verify = (path: string) => spawnSync(process.execPath, [join(ROOT, 'src/cli.ts'), 'audit', 'verify', path, '--jwks', jwksFile], { encoding: 'utf8' });

    const lines = readFileSync(file, 'utf8').trim().split('\n');
    const intact = verify(file);
    assert.equal(intact.status, 0, intact.stdout + intact.stderr);
    assert.equal(intact.stdout, `intact: ${lines.length} records (seq 1–${lines.length}), 1 of 1 checkpoints verified\n`);
    // As the README writes it: --jwks the gateway's URL (served here from the saved copy).
    const jwksServer = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(readFileSync(jwksFile)));
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
    const byUrl = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, 'src/cli.ts'), 'audit', 'verify', file, '--jwks', jwksUrl]);
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
      });
      child.on('exit', (code) => resolve({ code, stdout }));
    });
    jwksServer.close();
    assert.equal(byUrl.code, 0);
    assert.equal(byUrl.stdout, intact.stdout);

    const altered = join(dir, 'altered.jsonl');
    writeFileSync(altered, `${lines.map((l, i) => (i === 2 ? l.replace('"gateway.', '"gatewaY.') : l)).join('\n')}\n`);
    const broken = verify(altered);
    assert.equal(broken.status, 1);
    assert.equal(broken.stdout.split('\n')[0], "broken: record seq 3 (line 3) was altered: its hash does not match seq 4's prev");

    const removed = join(dir, 'removed.jsonl');
    writeFileSync(removed, `${lines.filter((_, i) => i !== 3).join('\n')}\n`);
    const gap = verify(removed);
    assert.equal(gap.status, 1);
    assert.equal(gap.stdout.split('\n')[0], 'broken: record seq 4 missing: line 4 has seq 5 after seq 3');
  });
});
