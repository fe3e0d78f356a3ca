import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { redirectUriMatches, redirectUriProblem } from './redirect-uri.ts';

describe('redirectUriProblem', () => {
  const cases: [string, string | undefined][] = [
    ['https://app.example.com/cb', undefined],
    ['http://127.0.0.1:33418/callback', undefined],
    ['http://localhost:6274/oauth/callback', undefined],
    ['http://[::1]:9000/cb', undefined],
    ['cursor://anysphere.cursor-retrieval/oauth/callback', undefined],
    ['vscode://vscode.github-authentication/did-authenticate', undefined],
    ['http://evil.example.com/cb', 'http is allowed only on loopback hosts'],
    ['http://127.0.0.1.evil.com/cb', 'http is allowed only on loopback hosts'],
    ['https://app.example.com/cb#frag', 'must not contain a fragment'],
    ['javascript:alert(1)', 'scheme javascript: is not allowed'],
    ['data:text/html,hi', 'scheme data: is not allowed'],
    ['/relative/path', 'not an absolute URI'],
  ];
  for (const [uri, expected] of cases) {
    it(`${uri} → ${expected ?? 'ok'}`, () => assert.equal(redirectUriProblem(uri), expected));
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
  ];
  for (const [registered, requested, expected] of cases) {
    it(`${registered[0]} vs ${requested} → ${expected}`, () =>
      assert.equal(redirectUriMatches(registered, requested), expected));
  }
});
