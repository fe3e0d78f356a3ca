import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { customSchemeProblem, redirectUriMatches, redirectUriProblem } from './redirect-uri.ts';

const EDITOR_SCHEMES = ['cursor', 'vscode', 'vscode-insiders', 'windsurf'];
const NOT_PRIVATE_USE = 'is not allowed: use https, loopback http or a reverse-domain private-use scheme (RFC 8252 §7.1)';

describe('redirectUriProblem', () => {
  const cases: [string, string | undefined][] = [
    ['https://app.example.com/cb', undefined],
    ['http://127.0.0.1:33418/callback', undefined],
    ['http://localhost:6274/oauth/callback', undefined],
    ['http://[::1]:9000/cb', undefined],
    ['cursor://anysphere.cursor-retrieval/oauth/callback', undefined],
    ['vscode://vscode.github-authentication/did-authenticate', undefined],
    ['cursor://anysphere.cursor-mcp/oauth/callback', undefined],
    ['windsurf://codeium.windsurf/oauth/callback', undefined],
    ['com.example.app:/oauth2redirect', undefined], // RFC 8252 §7.1 reverse-domain scheme
    ['com.example.app://callback', undefined],
    ['myapp://callback', `scheme myapp: ${NOT_PRIVATE_USE}`], // not reverse-domain, not configured
    ['mailto:someone@example.com', `scheme mailto: ${NOT_PRIVATE_USE}`],
    ['view-source:https://app.example.com/', 'scheme view-source: is not allowed'],
    ['ms-settings:privacy', 'scheme ms-settings: is not allowed'],
    ['ms-msdt:/id', 'scheme ms-msdt: is not allowed'],
    ['ms-app.example:/cb', 'scheme ms-app.example: is not allowed'], // the deny list wins over the dot
    ['search-ms:query=x', 'scheme search-ms: is not allowed'],
    ['http://127.0.0.1:33418/cb#frag', 'must not contain a fragment'],
    [`https://app.example.com/${'x'.repeat(2024)}`, undefined], // 2048 characters
    [`https://app.example.com/${'x'.repeat(2025)}`, 'must be at most 2048 characters'],
    ['http://evil.example.com/cb', 'http is allowed only on loopback hosts'],
    ['http://127.0.0.1.evil.com/cb', 'http is allowed only on loopback hosts'],
    ['https://app.example.com/cb#frag', 'must not contain a fragment'],
    ['javascript:alert(1)', 'scheme javascript: is not allowed'],
    ['data:text/html,hi', 'scheme data: is not allowed'],
    ['/relative/path', 'not an absolute URI'],
  ];
  for (const [uri, expected] of cases) {
    it(`${uri.slice(0, 60)} → ${expected ?? 'ok'}`, () => assert.equal(redirectUriProblem(uri, EDITOR_SCHEMES), expected));
  }

  it('a configured scheme is accepted only when configured', () => {
    assert.equal(redirectUriProblem('myapp://callback', ['myapp']), undefined);
    assert.equal(redirectUriProblem('cursor://anysphere.cursor-mcp/oauth/callback', []), `scheme cursor: ${NOT_PRIVATE_USE}`);
  });
});

describe('customSchemeProblem (the deny list cannot be configured away)', () => {
  const cases: [string, string | undefined][] = [
    ['cursor', undefined],
    ['myapp', undefined],
    ['view-source', 'scheme view-source: can never be a redirect'],
    ['ms-settings', 'scheme ms-settings: can never be a redirect'],
    ['javascript', 'scheme javascript: can never be a redirect'],
    ['http', 'http is not a custom scheme'],
  ];
  for (const [scheme, expected] of cases) {
    it(`${scheme} → ${expected ?? 'ok'}`, () => assert.equal(customSchemeProblem(scheme), expected));
  }
});

describe('redirectUriMatches', () => {
  const cases: [string[], string, boolean][] = [
    [['https://app.example.com/cb'], 'https://app.example.com/cb', true],
    [['https://app.example.com/cb'], 'https://app.example.com/cb/', false],
    [['https://app.example.com/cb'], 'https://app.example.com/cb?x=1', false],
    [['https://app.example.com:443/cb'], 'https://app.example.com:8443/cb', false],
    [['http://127.0.0.1:3000/cb'], 'http://127.0.0.1:54321/cb', true],
    [['http://127.0.0.1/cb'], 'http://127.0.0.1:54321/cb', true],
    [['http://127.0.0.1:3000/cb'], 'http://localhost:3000/cb', false],
    [['http://127.0.0.1:3000/cb'], 'http://127.0.0.1:3000/other', false],
    [['cursor://x/cb'], 'cursor://x/cb2', false],
    [['http://127.0.0.1:3000/cb'], 'http://127.0.0.1:54321/cb#frag', false], // RFC 6749 §3.1.2
    [['http://127.0.0.1:3000/cb'], 'http://127.0.0.1:3000/cb#', false],
    [['http://localhost/cb'], 'http://localhost:8080/cb#x', false],
  ];
  for (const [registered, requested, expected] of cases) {
    it(`${registered[0]} vs ${requested} → ${expected}`, () =>
      assert.equal(redirectUriMatches(registered, requested), expected));
  }
});
