/** Server-rendered pages of the gateway: consent, account, errors. Everything dynamic is escaped. */

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Longest client-supplied text a page shows; the rest is cut with an ellipsis. */
const MAX_DISPLAY_CHARACTERS = 80;

/**
 * Client-supplied text (client_name) as a page may show it: control and format characters
 * removed — bidi overrides such as U+202E could make "moc.live" read as "evil.com", zero-width
 * ones hide look-alikes (Unicode TR 9 §2, TR 36 §3) — whitespace collapsed, length bounded.
 * Not escaping: pass the result through escapeHtml.
 */
function displayText(value: string): string {
  const visible = value
    .replace(/\p{Cf}/gu, '')
    .replace(/[\s\p{Cc}]+/gu, ' ')
    .trim();
  const characters = [...visible];
  return characters.length > MAX_DISPLAY_CHARACTERS ? `${characters.slice(0, MAX_DISPLAY_CHARACTERS).join('')}…` : visible;
}

/** MCP security best practices: consent pages must not be framed (clickjacking). */
export const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
} as const;

const STYLE = `body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.4rem}code{background:#f2f2f2;padding:0 .25rem}ul{padding-left:1.2rem}
.actions{display:flex;gap:.75rem;margin-top:1.5rem}button{font-size:1rem;padding:.5rem 1.2rem;border-radius:.4rem;border:1px solid #888;cursor:pointer}
button.primary{background:#0f6cbd;color:#fff;border-color:#0f6cbd}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.35rem;border-bottom:1px solid #ddd}
.error{color:#a4262c}.host{font-size:1.1rem;padding:.6rem;background:#fff4ce;border-radius:.4rem}`;

export function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>`;
}

export function errorPage(title: string, detail: string): string {
  return page(title, `<h1 class="error">${escapeHtml(title)}</h1><p>${escapeHtml(detail)}</p>`);
}

/** An error the client should hear about, shown with a link back rather than redirected automatically. */
export function errorReturnPage(title: string, detail: string, returnUrl: string, returnHost: string): string {
  return page(
    title,
    `<h1 class="error">${escapeHtml(title)}</h1><p>${escapeHtml(detail)}</p><p><a id="return" href="${escapeHtml(returnUrl)}">Return to ${escapeHtml(returnHost)}</a></p>`,
  );
}

export interface ConsentView {
  requestId: string;
  csrf: string;
  clientName: string;
  clientId: string;
  redirectHost: string;
  scopes: string[];
  /** Scopes of `scopes` the user has not allowed this client before (a step-up): marked as new. */
  addedScopes: string[];
  resource: string;
  userName?: string;
}

/**
 * The consent page. Before sign-in it asks the browser's user; after sign-in (no stored approval
 * for this user) it names the signed-in user, who confirms for themselves. The redirect host is
 * shown prominently: the name is the client's claim, the host is where the code really goes.
 */
export function consentPage(view: ConsentView): string {
  const name = displayText(view.clientName) || view.clientId;
  const who = view.userName ? `<p id="signed-in-as">Signed in as <strong>${escapeHtml(displayText(view.userName))}</strong>.</p>` : '';
  const added = new Set(view.addedScopes);
  const scopes = view.scopes
    .map((s) => (added.has(s) ? `<li class="added"><code>${escapeHtml(s)}</code> <strong>new</strong></li>` : `<li><code>${escapeHtml(s)}</code></li>`))
    .join('');
  const more =
    added.size > 0
      ? `<p id="added-scopes" class="host">It asks for more than you allowed it before: <strong>${[...added].map(escapeHtml).join(' ')}</strong>.</p>`
      : '';
  return page(
    'Allow access?',
    `${who}<h1>Allow <span id="client-name">${escapeHtml(name)}</span> to use your MCP tools?</h1>
<p class="host">It will receive access at <strong id="redirect-host">${escapeHtml(view.redirectHost)}</strong>.
Allow only if you started this from an application at that address.</p>
<p>It will act as you on <code>${escapeHtml(view.resource)}</code>.</p>
<p>Client id: <code>${escapeHtml(view.clientId)}</code></p>
${more}<p>Requested permissions:</p><ul id="scopes">${scopes}</ul>
<form method="post" action="/consent">
<input type="hidden" name="request" value="${escapeHtml(view.requestId)}">
<input type="hidden" name="csrf" value="${escapeHtml(view.csrf)}">
<div class="actions"><button class="primary" type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button></div>
</form>`,
  );
}

export interface AccountClientView {
  clientId: string;
  clientName: string;
  redirectHost: string;
  approvedAt: number;
  lastUsedAt?: number;
  /** Grants (signed-in sessions of the client) still alive; 0 = approved, but no access now. */
  liveGrants: number;
}

export function accountPage(userName: string, clients: AccountClientView[], csrf: string): string {
  const date = (t?: number) => (t ? new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : 'never');
  const rows = clients
    .map(
      (c) => `<tr><td>${escapeHtml(displayText(c.clientName) || c.clientId)}<br><small><code>${escapeHtml(c.clientId)}</code></small></td>
<td>${escapeHtml(c.redirectHost)}</td><td class="access">${c.liveGrants > 0 ? 'connected' : 'not connected (approval only)'}</td><td>${date(c.approvedAt)}</td><td>${date(c.lastUsedAt)}</td>
<td><form method="post" action="/account/revoke"><input type="hidden" name="csrf" value="${escapeHtml(csrf)}">
<input type="hidden" name="client_id" value="${escapeHtml(c.clientId)}"><button type="submit">Revoke</button></form></td></tr>`,
    )
    .join('');
  const table = clients.length
    ? `<table><thead><tr><th>Client</th><th>Redirects to</th><th>Access</th><th>Approved</th><th>Last used</th><th></th></tr></thead><tbody>${rows}</tbody></table>`
    : '<p id="no-clients">You have not approved any clients.</p>';
  return page('Your connected clients', `<h1>Connected clients</h1><p>Signed in as <strong>${escapeHtml(userName)}</strong>.</p>${table}`);
}
