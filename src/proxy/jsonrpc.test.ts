import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { headerMismatch } from './jsonrpc.ts';

const VERSION = '2026-07-28';
const base64 = (value: string) => `=?base64?${Buffer.from(value, 'utf8').toString('base64')}?=`;

describe('2026-07-28 mirrored headers (transports/streamable-http §Server Validation)', () => {
  // [method, params, Mcp-Name header, expected mismatch message or undefined]
  const cases: [string, Record<string, unknown>, string | undefined, string | undefined][] = [
    ['tools/call', { name: 'echo' }, 'echo', undefined],
    ['prompts/get', { name: 'greet' }, 'other', "Header mismatch: Mcp-Name header value 'other' does not match body value 'greet'"],
    ['resources/read', { uri: 'file:///a b' }, base64('file:///a b'), undefined],
    // The tasks extension's binding (SEP-2663): Mcp-Name mirrors params.taskId.
    ['tasks/get', { taskId: 't-1' }, 't-1', undefined],
    ['tasks/get', { taskId: 't-1' }, 't-2', "Header mismatch: Mcp-Name header value 't-2' does not match body value 't-1'"],
    ['tasks/get', { taskId: 't-1' }, undefined, 'Header mismatch: required Mcp-Name header is missing'],
    ['tasks/update', { taskId: 'tâche' }, base64('tâche'), undefined],
    ['tasks/update', { taskId: 't-1' }, undefined, 'Header mismatch: required Mcp-Name header is missing'],
    ['tasks/cancel', { taskId: 't-1' }, 't-9', "Header mismatch: Mcp-Name header value 't-9' does not match body value 't-1'"],
    ['tasks/cancel', { taskId: 't-1' }, undefined, 'Header mismatch: required Mcp-Name header is missing'],
    // Methods that carry no name need no Mcp-Name.
    ['tasks/list', {}, undefined, undefined],
    ['server/discover', {}, undefined, undefined],
    ['subscriptions/listen', { notifications: { toolsListChanged: true } }, undefined, undefined],
  ];
  for (const [method, params, name, expected] of cases) {
    it(`${method} ${JSON.stringify(params)} with Mcp-Name ${name ?? '(none)'}: ${expected ?? 'accepted'}`, () => {
      const message = { jsonrpc: '2.0', id: 1, method, params };
      assert.equal(headerMismatch({ protocolVersion: VERSION, method, name }, message), expected);
    });
  }
});
