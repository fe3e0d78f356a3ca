import { join } from 'node:path';
import { MCP_HEADERS } from './context.ts';
import { startWorker, type Worker } from './procs.ts';

/** The key the snippets server requires (x-functions-key); the gateway, nginx and the node proxy inject it. */
export const SNIPPETS_KEY = 'bench-backend-key';

/**
 * Benchmark 1's backend of this kind on the server CPU: the snippets server (checking the key and
 * the assertions of the gateway at `gatewayOrigin`) or the minimal JSON backend.
 */
export function startBackend(kind: 'snippets' | 'minimal', dir: string, gatewayOrigin: string): Promise<Worker> {
  if (kind === 'minimal') return startWorker('backend', { role: 'server', maxFds: 65_536 });
  return startWorker('snippets', {
    role: 'server',
    maxFds: 65_536,
    args: {
      dataDir: join(dir, 'snippets'),
      functionKey: SNIPPETS_KEY,
      identityJwksUrl: `${gatewayOrigin}/.well-known/jwks.json`,
      identityAudience: `${gatewayOrigin}/mcp`,
    },
  });
}

/** The MCP tool call of benchmark 1's real-backend row (the snippets server's greeting). */
export const HELLO_CALL_BODY = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hello_mcp', arguments: {} } });

/**
 * Opens a Streamable HTTP session at `url` as an MCP client does (initialize, then
 * notifications/initialized; MCP 2025-11-25 lifecycle) and returns its Mcp-Session-Id.
 */
export async function openSession(url: string, headers: Record<string, string>): Promise<string> {
  const initialize = JSON.stringify({
    jsonrpc: '2.0',
    id: 0,
    method: 'initialize',
    params: { protocolVersion: MCP_HEADERS['mcp-protocol-version'], capabilities: {}, clientInfo: { name: 'bench', version: '1' } },
  });
  const opened = await fetch(url, { method: 'POST', headers: { ...MCP_HEADERS, ...headers }, body: initialize });
  const text = await opened.text();
  const sessionId = opened.headers.get('mcp-session-id');
  if (opened.status !== 200 || !sessionId) throw new Error(`initialize at ${url}: ${opened.status} ${text}`);
  const initialized = await fetch(url, {
    method: 'POST',
    headers: { ...MCP_HEADERS, ...headers, 'mcp-session-id': sessionId },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  });
  await initialized.arrayBuffer();
  if (initialized.status !== 202) throw new Error(`notifications/initialized at ${url}: ${initialized.status}`);
  return sessionId;
}
