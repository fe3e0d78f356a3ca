import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Secrets of the one-command dev system, generated once and kept under the data directory. */
export interface DevSecrets {
  encryptionKey: string;
  cookieKey: string;
  signingKey: string;
  functionKey: string;
  users: { login: string; password: string; name: string; email: string; oid: string; roles: string[]; groups: string[] }[];
}

/** The dev users' app roles, which the sample policy reads (an older dev-secrets file is upgraded to them). */
const DEV_ROLES: Record<string, string> = { alice: 'Snippets.Write', bob: 'Snippets.Read' };

/**
 * The dev system's sample policy on the snippets backend: reading needs Snippets.Read or
 * Snippets.Write, writing needs Snippets.Write, and saves are limited per user (DEV_POLICY_QUOTAS).
 */
export const DEV_POLICY_RULES = [
  { name: 'readers', tools: ['hello_mcp', 'get_snippet', 'list_snippets'], roles: ['Snippets.Read', 'Snippets.Write'] },
  { name: 'writers', tools: ['save_snippet', 'delete_snippet'], roles: ['Snippets.Write'] },
];

/** At most 30 saves per minute per user (a sliding minute). */
export const DEV_POLICY_QUOTAS = [{ name: 'saves', tools: ['save_snippet'], limit: 30, per: 'user' as const, windowSeconds: 60, window: 'sliding' as const }];

/** Reads ./data/dev-secrets.json, creating it (mode 0600) on first start. */
export function loadOrCreateDevSecrets(dataDir: string): DevSecrets {
  const file = join(resolve(dataDir), 'dev-secrets.json');
  try {
    const secrets = JSON.parse(readFileSync(file, 'utf8')) as DevSecrets;
    // Written before the sample policy: give the dev users their roles, keep everything else.
    let upgraded = false;
    for (const user of secrets.users) {
      const role = DEV_ROLES[user.login];
      if (role && !user.roles.includes(role)) {
        user.roles.push(role);
        upgraded = true;
      }
    }
    if (upgraded) writeFileSync(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
    return secrets;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${file}: unreadable (${(error as Error).message})`);
  }
  const password = () => randomBytes(9).toString('base64url');
  const secrets: DevSecrets = {
    encryptionKey: randomBytes(32).toString('base64'),
    cookieKey: randomBytes(32).toString('base64url'),
    signingKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    functionKey: randomBytes(24).toString('base64url'),
    users: [
      { login: 'alice', password: password(), name: 'Alice Admin', email: 'alice@example.com', oid: randomUUID(), roles: ['admin', 'Snippets.Write'], groups: ['mcp-users'] },
      { login: 'bob', password: password(), name: 'Bob Builder', email: 'bob@example.com', oid: randomUUID(), roles: ['Snippets.Read'], groups: ['mcp-users'] },
    ],
  };
  mkdirSync(resolve(dataDir), { recursive: true });
  writeFileSync(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  return secrets;
}

/** The dev system's gateway config, as YAML-shaped data (env MCPGW_* overrides still apply). */
export function devConfig(options: { dataDir: string; port: number; idpPort: number; adminPort: number; snippetsUrl: string; secrets: DevSecrets }) {
  const publicUrl = `http://localhost:${options.port}`;
  return {
    mode: 'dev',
    publicUrl,
    listen: { host: '127.0.0.1', port: options.port },
    admin: { listen: { host: '127.0.0.1', port: options.adminPort } },
    store: { kind: 'sqlite', path: join(options.dataDir, 'gateway.db') },
    // A developer re-registering clients on loopback must not be locked out (the listener is
    // loopback-only); the gateway-wide daily cap still holds.
    rateLimits: { registrationsPerHour: 0 },
    audit: { sink: 'file', file: { path: join(options.dataDir, 'audit.jsonl') } },
    shutdownGraceSeconds: 2,
    secrets: {
      encryptionKeys: [{ id: 'dev-1', key: options.secrets.encryptionKey }],
      cookieKey: options.secrets.cookieKey,
      signingKey: options.secrets.signingKey,
    },
    upstream: { dev: { port: options.idpPort, users: options.secrets.users } },
    backends: [
      {
        name: 'snippets',
        path: '/mcp',
        url: `${options.snippetsUrl}/mcp`,
        sseUrl: `${options.snippetsUrl}/sse`,
        scopes: ['mcp:tools'],
        credential: { header: 'x-functions-key', value: options.secrets.functionKey },
        policy: { rules: DEV_POLICY_RULES, quotas: DEV_POLICY_QUOTAS },
      },
    ],
  };
}

/** What a newcomer pastes into their client. */
export function connectionGuide(publicUrl: string, adminUrl: string, users: DevSecrets['users'], auditFile: string): string {
  const mcpUrl = `${publicUrl}/mcp`;
  const sseUrl = `${publicUrl}/mcp/sse`;
  const vscode = JSON.stringify({ servers: { snippets: { type: 'http', url: mcpUrl } } }, null, 2);
  const cursor = JSON.stringify({ mcpServers: { snippets: { url: mcpUrl } } }, null, 2);
  return [
    '',
    'mcp-entra-gateway is running (dev mode: embedded sign-in, SQLite state under ./data).',
    '',
    `  MCP URL (Streamable HTTP): ${mcpUrl}`,
    `  MCP URL (legacy SSE):      ${sseUrl}`,
    `  Your connected clients:    ${publicUrl}/account`,
    `  Audit trail:               ${auditFile}  (check it: mcp-entra-gateway audit verify ${auditFile})`,
    `  Metrics and readiness:     ${adminUrl}/metrics  ${adminUrl}/readyz  (admin listener, loopback only)`,
    '',
    'Sample policy: alice (Snippets.Write) may use all five snippets tools; bob (Snippets.Read) sees and calls only the three read tools; save_snippet: at most 30 calls per minute per user.',
    '',
    'Dev sign-in users:',
    ...users.map((u) => `  ${u.login.padEnd(8)} password: ${u.password}   (${u.name}${u.roles.length ? `, roles: ${u.roles.join(',')}` : ''})`),
    '',
    'Claude Code:',
    `  claude mcp add --transport http snippets ${mcpUrl}`,
    '',
    'VS Code (.vscode/mcp.json):',
    indent(vscode),
    '',
    'Cursor (~/.cursor/mcp.json):',
    indent(cursor),
    '',
    'MCP Inspector:',
    `  npx @modelcontextprotocol/inspector   then connect to ${mcpUrl} (Streamable HTTP) or ${sseUrl} (SSE)`,
    `  npx @modelcontextprotocol/inspector --cli ${mcpUrl} --protocol-era modern --method tools/list   (2026-07-28; signs in through your browser)`,
    '',
    'Press Ctrl-C to stop.',
    '',
  ].join('\n');
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}
