import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DEV_USERS, type Harness, startHarness } from '../support/gateway-harness.ts';

describe('GET /: a landing page for a newcomer', () => {
  let gw: Harness;
  before(async () => {
    gw = await startHarness({
      backends: [
        { name: 'snippets', path: '/mcp', url: 'http://127.0.0.1:9/mcp', sseUrl: 'http://127.0.0.1:9/sse' },
        { name: 'github', path: '/github/mcp', url: 'http://127.0.0.1:9/mcp' },
      ],
    });
  });
  after(() => gw.close());

  it('names every MCP URL, how to connect, /account, and the dev logins without their passwords', async () => {
    const response = await fetch(`${gw.publicUrl}/`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/html; charset=utf-8');
    const html = await response.text();
    assert.deepEqual(
      [...html.matchAll(/<code class="mcp-url">([^<]+)<\/code>/g)].map((m) => m[1]),
      [`${gw.publicUrl}/mcp`, `${gw.publicUrl}/github/mcp`],
    );
    assert.ok(html.includes(`legacy HTTP+SSE: <code>${gw.publicUrl}/mcp/sse</code>`));
    assert.ok(!html.includes(`${gw.publicUrl}/github/mcp/sse`), 'no SSE URL where the backend has none');
    assert.ok(html.includes(`claude mcp add --transport http snippets ${gw.publicUrl}/mcp`));
    assert.ok(html.includes('<a href="/account">'));
    for (const user of DEV_USERS) {
      assert.ok(html.includes(`<code>${user.login}</code>`), user.login);
      assert.ok(!html.includes(user.password), 'no password on the page');
    }
  });
});
