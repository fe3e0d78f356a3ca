import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import { parsedBody } from '../http/parsed-body.ts';
import type { Clock } from '../ports/clock.ts';
import type { AccessTokenRecord } from '../ports/records.ts';
import { createEnforcer, type Enforcer, type Subject } from './enforce.ts';

const record: AccessTokenRecord = {
  grantId: 'g',
  clientId: 'https://client.example/metadata.json',
  userKey: 'u',
  user: { issuer: 'https://idp.example/v2.0', subject: 's', roles: ['Snippets.Read'], groups: ['g-1'] },
  scopes: ['mcp:tools'],
  resource: 'https://mcp.example.com/mcp',
  expiresAt: 4_000_000_000,
};

function enforcerAt(clock: Clock, when: string, ip = () => '10.0.0.1'): Enforcer {
  const enforcer = createEnforcer([{ name: 'readers', effect: 'allow', tools: ['hello'], roles: ['Snippets.Read', 'Snippets.Write'], when }], {
    backend: 'b',
    clock,
    clientIp: ip,
  });
  assert.ok(enforcer);
  return enforcer;
}

function subjectOf(enforcer: Enforcer, rec = record): Subject {
  const subject = enforcer.subject({ headers: {} } as IncomingMessage, rec);
  assert.ok(!(subject instanceof Promise));
  return subject;
}

const call = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hello', arguments: {} } }));
const FIXED: Clock = { nowMs: () => 0, nowSeconds: () => 0 };
const refusedHello = { refusal: { jsonrpc: '2.0', error: { code: -32602, message: 'Tool hello not found' }, id: 1 }, asksForLists: false };

describe('the policy path per call (issue 12, must-show 7)', () => {
  it('builds the user and client once per token record, the request per call', () => {
    const enforcer = enforcerAt(FIXED, 'true');
    const first = subjectOf(enforcer);
    const second = subjectOf(enforcer);
    assert.equal(second.user, first.user);
    assert.equal(second.client, first.client);
    assert.notEqual(second.request, first.request);
    assert.notEqual(subjectOf(enforcer, { ...record }).user, first.user, 'another record object: built again');
    assert.deepEqual({ ...first.user }, { oid: '', tid: '', sub: 's', name: '', preferred_username: '', email: '', roles: ['Snippets.Read'], groups: ['g-1'], idp: 'https://idp.example/v2.0', kind: 'person' });
    assert.deepEqual({ ...first.client }, { client_id: 'https://client.example/metadata.json', name: '', kind: 'cimd' });
  });

  it('reads request.ip only when a condition does, and request.time as of when the request was judged', () => {
    let reads = 0;
    let nowMs = Date.parse('2026-01-01T09:00:00Z');
    const clock: Clock = { nowMs: () => nowMs, nowSeconds: () => Math.floor(nowMs / 1000) };
    const ip = () => {
      reads++;
      return '10.0.0.1';
    };
    assert.deepEqual(enforcerAt(clock, 'true', ip).screen(call, subjectOf(enforcerAt(clock, 'true', ip))), { refusal: undefined, asksForLists: false });
    assert.equal(reads, 0);
    const byIp = enforcerAt(clock, 'request.ip == "10.0.0.1"', ip);
    assert.deepEqual(byIp.screen(call, subjectOf(byIp)), { refusal: undefined, asksForLists: false });
    assert.equal(reads, 1);
    // Business hours: the subject is taken at 09:00, judged after the clock moved on to 18:00.
    const hours = enforcerAt(clock, 'request.time.getHours("UTC") < 17', ip);
    const subject = subjectOf(hours);
    nowMs = Date.parse('2026-01-01T18:00:00Z');
    assert.deepEqual(hours.screen(call, subject), { refusal: undefined, asksForLists: false });
    assert.deepEqual(hours.screen(call, subjectOf(hours)), refusedHello);
  });

  it('judges a body parsed once for every reader (src/http/parsed-body.ts) as its bytes', () => {
    const enforcer = enforcerAt(FIXED, 'true');
    const parsed = parsedBody(call);
    assert.deepEqual(enforcer.screen(parsed, subjectOf(enforcer)), { refusal: undefined, asksForLists: false });
    assert.equal(parsed.message, parsed.message, 'parsed once, the same value for the next reader');
    const denied = parsedBody(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'other' } })));
    assert.equal(
      (enforcer.screen(denied, subjectOf(enforcer)) as { refusal: { error: { message: string } } }).refusal.error.message,
      'Tool other not found',
    );
    assert.deepEqual(enforcer.screen(parsedBody(Buffer.from('{not json')), subjectOf(enforcer)), { refusal: undefined, asksForLists: false });
  });
});
