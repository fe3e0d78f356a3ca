import type { FastifyInstance } from 'fastify';
import type { ProtectedResource } from '../oauth/resources.ts';
import { escapeHtml, PAGE_HEADERS, page } from '../oauth/pages.ts';

export interface LandingFacts {
  resources: readonly ProtectedResource[];
  /** Who signs users in: `entra`, `oidc` or `dev`. */
  upstream: string;
  /** Dev mode's sign-in logins (never their passwords: any local user can read this page). */
  devLogins?: readonly string[];
}

/** GET /: what this is, the MCP URLs, how to connect a client, where to manage access. */
export function registerLanding(app: FastifyInstance, facts: LandingFacts): void {
  const html = landingPage(facts);
  app.get('/', async (_request, reply) => reply.headers(PAGE_HEADERS).send(html));
}

function landingPage(facts: LandingFacts): string {
  const signIn = { entra: 'Microsoft Entra ID', oidc: 'your OpenID Connect provider', dev: 'the built-in dev sign-in' }[facts.upstream] ?? facts.upstream;
  const servers = facts.resources
    .map((r) => {
      const sse = r.backend.sseUrl ? `<br>legacy HTTP+SSE: <code>${escapeHtml(`${r.resource}/sse`)}</code>` : '';
      return `<li><strong>${escapeHtml(r.name)}</strong>: <code class="mcp-url">${escapeHtml(r.resource)}</code> (Streamable HTTP)${sse}</li>`;
    })
    .join('');
  const first = facts.resources[0]!;
  const name = escapeHtml(first.name);
  const url = escapeHtml(first.resource);
  const dev = facts.devLogins?.length
    ? `<h2>Dev sign-in</h2><p>Users: ${facts.devLogins.map((l) => `<code>${escapeHtml(l)}</code>`).join(', ')}. Their passwords were printed by
<code>npm start</code> and are in <code>./data/dev-secrets.json</code>.</p>`
    : '';
  return page(
    'mcp-entra-gateway',
    `<h1>mcp-entra-gateway</h1>
<p>An MCP gateway: clients reach the MCP servers below only after the user signs in at ${escapeHtml(signIn)}.
On first use a client opens a browser to approve it and sign in.</p>
<h2>MCP servers</h2><ul id="servers">${servers}</ul>
<h2>Connect a client</h2>
<ul>
<li>Claude Code: <code>claude mcp add --transport http ${name} ${url}</code></li>
<li>VS Code, <code>.vscode/mcp.json</code>: <code>{ "servers": { "${name}": { "type": "http", "url": "${url}" } } }</code></li>
<li>Cursor, <code>~/.cursor/mcp.json</code>: <code>{ "mcpServers": { "${name}": { "url": "${url}" } } }</code></li>
<li>MCP Inspector: <code>npx @modelcontextprotocol/inspector</code>, transport Streamable HTTP, URL <code>${url}</code></li>
</ul>
<p><a href="/account">Your connected clients</a>: what you approved, with a Revoke button for each.</p>
${dev}`,
  );
}
