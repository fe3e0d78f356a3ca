import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isValidChallenge, verifyPkce } from './pkce.ts';

// RFC 7636 Appendix B.
const VERIFIER = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
const CHALLENGE = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';

describe('pkce', () => {
  const cases: [string, string, string, boolean][] = [
    ['RFC 7636 example', VERIFIER, CHALLENGE, true],
    ['wrong verifier', `${VERIFIER.slice(0, -1)}A`, CHALLENGE, false],
    ['plain (verifier equals challenge)', CHALLENGE, CHALLENGE, false],
    ['too short', 'abc', CHALLENGE, false],
    ['illegal characters', `${VERIFIER}!`, CHALLENGE, false],
  ];
  for (const [name, verifier, challenge, expected] of cases) {
    it(name, () => assert.equal(verifyPkce(verifier, challenge), expected));
  }
  it('checks challenge shape', () => {
    assert.equal(isValidChallenge(CHALLENGE), true);
    assert.equal(isValidChallenge('short'), false);
    assert.equal(isValidChallenge(`${CHALLENGE}=`), false);
  });
});
