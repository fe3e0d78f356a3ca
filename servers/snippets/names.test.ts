import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_MAX_SNIPPET_BYTES, NAME_RULE, snippetContentProblem, snippetNameProblem } from './names.ts';

describe('snippetNameProblem', () => {
  const cases: Array<[name: string, problem: string | undefined]> = [
    ['a', undefined],
    ['hello-world_1.txt', undefined],
    ['A.B.C', undefined],
    ['.hidden', undefined],
    ['...', undefined],
    ['x'.repeat(128), undefined],
    ['', `Snippet name is empty: use ${NAME_RULE}`],
    ['x'.repeat(129), 'Snippet name is 129 characters long; the limit is 128'],
    ['.', `Snippet name "." is not allowed: use ${NAME_RULE}`],
    ['..', `Snippet name ".." is not allowed: use ${NAME_RULE}`],
    ['a/b', `Snippet name "a/b" is invalid: use ${NAME_RULE}`],
    ['../etc', `Snippet name "../etc" is invalid: use ${NAME_RULE}`],
    ['a\\b', `Snippet name "a\\\\b" is invalid: use ${NAME_RULE}`],
    ['with space', `Snippet name "with space" is invalid: use ${NAME_RULE}`],
    ['ümlaut', `Snippet name "ümlaut" is invalid: use ${NAME_RULE}`],
    ['line\nbreak', `Snippet name "line\\nbreak" is invalid: use ${NAME_RULE}`],
    ['nul\0', `Snippet name "nul\\u0000" is invalid: use ${NAME_RULE}`],
    ['a:b', `Snippet name "a:b" is invalid: use ${NAME_RULE}`],
  ];
  for (const [name, problem] of cases) {
    it(`${JSON.stringify(name.length > 20 ? name.slice(0, 20) + '…' : name)} → ${problem ?? 'valid'}`, () => {
      assert.equal(snippetNameProblem(name), problem);
    });
  }
});

describe('snippetContentProblem', () => {
  const cases: Array<[label: string, content: string, maxBytes: number, problem: string | undefined]> = [
    ['one char', 'x', DEFAULT_MAX_SNIPPET_BYTES, undefined],
    ['exactly 1 MiB', 'x'.repeat(1024 * 1024), DEFAULT_MAX_SNIPPET_BYTES, undefined],
    ['1 MiB + 1', 'x'.repeat(1024 * 1024 + 1), DEFAULT_MAX_SNIPPET_BYTES, 'Snippet content is 1048577 bytes (UTF-8); the limit is 1048576 bytes'],
    ['empty', '', DEFAULT_MAX_SNIPPET_BYTES, 'Snippet content is empty: pass the text to save in "snippet"'],
    ['counts UTF-8 bytes, not characters', 'é'.repeat(3), 5, 'Snippet content is 6 bytes (UTF-8); the limit is 5 bytes'],
    ['multi-byte at the limit', 'é'.repeat(3), 6, undefined],
  ];
  for (const [label, content, maxBytes, problem] of cases) {
    it(label, () => {
      assert.equal(snippetContentProblem(content, maxBytes), problem);
    });
  }
});
