import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AnswerOutcome, eachAnswer, outcomeOf, outlineOf, READ_WHOLE, type RequestOutline, readAnswer, readRequest } from './message-scan.ts';

/** What the gateway read of `text` before: JSON.parse, then the outcome of the parsed message. */
function parsed(text: string): AnswerOutcome | undefined {
  try {
    return outcomeOf(JSON.parse(text));
  } catch {
    return undefined;
  }
}

/** readAnswer, with READ_WHOLE followed as the gateway follows it (a whole parse). */
function read(text: string): AnswerOutcome | undefined {
  const outcome = readAnswer(text);
  return outcome === READ_WHOLE ? parsed(text) : outcome;
}

/** A small deterministic PRNG (mulberry32): the same cases on every run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NAMES = ['id', 'method', 'error', 'result', 'code', 'isError', 'jsonrpc', 'content', 'i\\u0064', 'isErr\\u006fr', 'x'];
const REQUEST_NAMES = ['id', 'method', 'params', 'name', 'uri', 'arguments', '_meta', 'jsonrpc', 'p\\u0061rams', 'n\\u0061me', 'x'];
const STRINGS = ['', 'hello', 'a \\"quoted\\" \\\\ word', '\\u00e9t\\u00E9 \\n\\t', 'ünïcödé 😀', '{\\"id\\":1}', 'isError', '}]'];

/** A random JSON text of JSON-RPC-like shape, with the names and spacing an answer can have. */
function jsonText(next: () => number, depth: number, names: readonly string[] = NAMES): string {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const space = () => pick(['', '', ' ', '\n', '\r\n\t ']);
  const roll = next();
  if (depth > 3 || roll < 0.35) {
    return pick(['true', 'false', 'null', '0', '-1', '7', '12.5e-3', '1E400', '-0', `"${pick(STRINGS)}"`, `"${pick(STRINGS)}"`]);
  }
  if (roll < 0.5) {
    const items = Array.from({ length: Math.floor(next() * 4) }, () => space() + jsonText(next, depth + 1, names) + space());
    return `[${items.join(',')}]`;
  }
  const members = Array.from({ length: Math.floor(next() * 6) }, () => `${space()}"${pick(names)}"${space()}:${space()}${jsonText(next, depth + 1, names)}${space()}`);
  return `{${members.join(',')}}`;
}

/** The text with one character changed, removed or doubled. */
function mutated(text: string, next: () => number): string {
  const at = Math.floor(next() * text.length);
  const how = next();
  if (how < 0.33) return text.slice(0, at) + text.slice(at + 1);
  if (how < 0.66) return text.slice(0, at) + text[at] + text.slice(at);
  const replacements = '"{}[],:\\ tfn0-e.\f\u000b\u00a0';
  return text.slice(0, at) + replacements[Math.floor(next() * replacements.length)] + text.slice(at + 1);
}

describe('readAnswer', () => {
  it('reads the id and outcome of the answers the gateway sees', () => {
    assert.deepEqual(readAnswer('{"result":{"content":[{"type":"text","text":"Hello"}]},"jsonrpc":"2.0","id":1}'), {
      id: 1,
      errorCode: undefined,
      isError: false,
    });
    assert.deepEqual(readAnswer('{"jsonrpc":"2.0","id":"a-7","result":{"content":[],"isError":true}}'), { id: 'a-7', errorCode: undefined, isError: true });
    assert.deepEqual(readAnswer(' {"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"bad"}} \n'), { id: 3, errorCode: -32602, isError: false });
    // The last of duplicate members counts, as in JSON.parse; escaped names are names.
    assert.deepEqual(readAnswer('{"id":1,"id":2,"result":{"isError":true,"isError":false}}'), { id: 2, errorCode: undefined, isError: false });
    assert.deepEqual(readAnswer('{"i\\u0064":5,"result":{"isErr\\u006fr":true}}'), { id: 5, errorCode: undefined, isError: true });
  });

  it('reads no answer in requests, notifications, invalid JSON and ids of other types', () => {
    for (const text of [
      '{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}',
      '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1}}',
      '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse"}}',
      '{"jsonrpc":"2.0","id":[1],"result":{}}',
      '{"id":1,"result":{}',
      '{"id":1,"result":tru}',
      '{"id":1,"result":{}} x',
      '{"id":01,"result":{}}',
      '{"id":1,"result":"\u0001"}',
      '{"id":1,"result":"\\x"}',
      '{"id":1,,"result":{}}',
      '{}',
    ]) {
      assert.equal(readAnswer(text), undefined, text);
    }
  });

  it('leaves batches, non-objects and deep nesting to JSON.parse', () => {
    assert.equal(readAnswer('[{"id":1,"result":{}}]'), READ_WHOLE);
    assert.equal(readAnswer('"text"'), READ_WHOLE);
    assert.equal(readAnswer(''), READ_WHOLE);
    const deep = `{"id":1,"result":{"x":${'['.repeat(200_000)}${']'.repeat(200_000)}}}`;
    assert.equal(readAnswer(deep), READ_WHOLE);
    assert.deepEqual(read(deep), { id: 1, errorCode: undefined, isError: false });
  });

  it('reads a large result with many escapes', () => {
    const text = JSON.stringify({ jsonrpc: '2.0', id: 9, result: { content: [{ type: 'text', text: 'line "one"\n\\'.repeat(100_000) }], isError: true } });
    assert.deepEqual(readAnswer(text), { id: 9, errorCode: undefined, isError: true });
  });

  it('says what JSON.parse says, on 20 000 random texts and their mutations', () => {
    const next = random(8);
    let answers = 0;
    for (let i = 0; i < 10_000; i++) {
      const text = jsonText(next, 0);
      for (const candidate of [text, mutated(text, next)]) {
        const expected = parsed(candidate);
        if (expected !== undefined) answers++;
        assert.deepEqual(read(candidate), expected, candidate);
      }
    }
    // The generator makes answers often enough for the comparison to mean something.
    assert.ok(answers > 500, `only ${answers} answers`);
  });
});

/** A request-shaped text (members in random order, some missing, values of random types), or any JSON text. */
function requestText(next: () => number): string {
  if (next() < 0.3) return jsonText(next, 0, REQUEST_NAMES);
  const member = (name: string, value: string) => (next() < 0.85 ? [`"${name}" : ${value}`] : []);
  const sometimes = (value: string) => (next() < 0.7 ? value : jsonText(next, 2, REQUEST_NAMES));
  const params = [
    ...member('name', sometimes(`"${STRINGS[Math.floor(next() * STRINGS.length)]}"`)),
    ...member('uri', sometimes('"snippet://a"')),
    ...member('arguments', jsonText(next, 1, REQUEST_NAMES)),
    ...member('_meta', jsonText(next, 1, REQUEST_NAMES)),
    ...member('x', jsonText(next, 2, REQUEST_NAMES)),
  ].sort(() => next() - 0.5);
  const members = [
    ...member('jsonrpc', '"2.0"'),
    ...member('id', sometimes(next() < 0.5 ? '7' : '"a"')),
    ...member('method', sometimes('"tools/call"')),
    ...member('params', next() < 0.8 ? `{${params.join(', ')}}` : jsonText(next, 1, REQUEST_NAMES)),
  ].sort(() => next() - 0.5);
  return `{${members.join(',')}}`;
}

/** What the gateway outlined of a request's text before: JSON.parse, then each message's outline. */
function parsedRequest(text: string): RequestOutline | 'invalid' | 'batch' {
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    return 'invalid';
  }
  return Array.isArray(message) ? 'batch' : outlineOf(message);
}

describe('eachAnswer', () => {
  it('hands on every answer of a batch, one message, and none of a request or invalid text', () => {
    const seen = (text: string) => {
      const outcomes: AnswerOutcome[] = [];
      eachAnswer(text, (outcome) => outcomes.push(outcome));
      return outcomes;
    };
    assert.deepEqual(seen(' [{"id":1,"result":{}},{"id":"b","error":{"code":-32601}},{"method":"ping","id":3},7]'), [
      { id: 1, errorCode: undefined, isError: false },
      { id: 'b', errorCode: -32601, isError: false },
    ]);
    assert.deepEqual(seen('{"jsonrpc":"2.0","i\\u0064":4,"result":{"isError":true}}'), [{ id: 4, errorCode: undefined, isError: true }]);
    assert.deepEqual(seen('{"method":"ping","id":3}'), []);
    assert.deepEqual(seen('[{"id":1,"result":{}'), []);
  });
});

describe('readRequest', () => {
  it('outlines a tools/call, a resources/read and a notification', () => {
    assert.deepEqual(readRequest('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_mcp","arguments":{"a":[1,"x"]},"_meta":{"traceparent":"00-1-2-01"}}}', true), {
      method: 'tools/call',
      id: 1,
      name: 'hello_mcp',
      uri: undefined,
      arguments: { a: [1, 'x'] },
      meta: { traceparent: '00-1-2-01' },
    });
    assert.deepEqual(readRequest('{"method":"resources/read","id":"r","params":{"uri":"snippet://a"}}', false), {
      method: 'resources/read',
      id: 'r',
      name: undefined,
      uri: 'snippet://a',
      arguments: undefined,
      meta: undefined,
    });
    assert.deepEqual(readRequest('{"jsonrpc":"2.0","method":"notifications/initialized","params":7}', true), {
      method: 'notifications/initialized',
      id: undefined,
      name: undefined,
      uri: undefined,
      arguments: undefined,
      meta: undefined,
    });
  });

  it('leaves batches and invalid JSON to JSON.parse', () => {
    assert.equal(readRequest('[{"method":"ping","id":1}]', true), READ_WHOLE);
    assert.equal(readRequest('{"method":"ping","id":1', true), READ_WHOLE);
    assert.equal(readRequest('{"method":"ping"} {}', true), READ_WHOLE);
  });

  it('says what JSON.parse says, on 20 000 random texts and their mutations', () => {
    const next = random(11);
    let requests = 0;
    for (let i = 0; i < 10_000; i++) {
      const text = requestText(next);
      for (const candidate of [text, mutated(text, next)]) {
        const expected = parsedRequest(candidate);
        const outline = readRequest(candidate, true);
        if (outline === READ_WHOLE) {
          assert.ok(expected === 'invalid' || expected === 'batch' || !candidate.trimStart().startsWith('{'), candidate);
          continue;
        }
        if (typeof expected !== 'string' && expected.method !== undefined && expected.name !== undefined) requests++;
        assert.deepEqual(outline, expected, candidate);
      }
    }
    assert.ok(requests > 200, `only ${requests} requests with a method and name`);
  });
});
