import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

export interface DownstreamBackend {
  mcpUrl: string;
  /** Headers of every request received, in order. */
  requests: IncomingHttpHeaders[];
  close(): Promise<void>;
}

/** How the backend pulls its token: RFC 8693 at the gateway's /token, authenticated with its secret. */
export interface PullSettings {
  tokenUrl: string;
  clientId: string;
  secret: string;
  /** RFC 8693 `resource` or `scope` of the token it asks for. */
  resource?: string;
  scope?: string;
}

/**
 * A backend that needs a Graph token for its user (stateless Streamable HTTP, official SDK):
 * `whoami` calls Graph with the token the gateway pushed in `x-graph-token`; `whoami_pulled`
 * exchanges the identity assertion it received (`x-mcp-identity`) for one at the gateway's /token
 * (RFC 8693) and calls Graph with that. Each answers Graph's displayName, or what went wrong.
 */
export async function startDownstreamBackend(options: { graphUrl: string; pull?: PullSettings }): Promise<DownstreamBackend> {
  const requests: IncomingHttpHeaders[] = [];
  const text = (value: string, isError = false) => ({ content: [{ type: 'text' as const, text: value }], ...(isError ? { isError } : {}) });
  const me = async (authorization: string | undefined) => {
    const response = await fetch(`${options.graphUrl}/v1.0/me`, { headers: authorization ? { authorization } : {} });
    const body = (await response.json()) as { displayName?: string; error?: { message: string } };
    return response.ok ? text(`graph says: ${body.displayName}`) : text(`graph refused (${response.status}): ${body.error?.message}`, true);
  };
  const server = createServer((req, res) => {
    requests.push(req.headers);
    const mcp = new McpServer({ name: 'downstream-backend', version: '1.0.0' });
    mcp.registerTool('whoami', { description: 'Graph /me with the pushed token' }, async (extra) => {
      const pushed = extra.requestInfo?.headers['x-graph-token'];
      return me(typeof pushed === 'string' ? pushed : undefined);
    });
    mcp.registerTool('echo_plain', { description: 'Needs no token' }, async () => text('plain'));
    mcp.registerTool('whoami_pulled', { description: 'Graph /me with a token pulled by RFC 8693' }, async (extra) => {
      const pull = options.pull!;
      const assertion = extra.requestInfo?.headers['x-mcp-identity'];
      const form = new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: String(assertion),
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
        ...(pull.resource ? { resource: pull.resource } : {}),
        ...(pull.scope ? { scope: pull.scope } : {}),
      });
      const response = await fetch(pull.tokenUrl, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${pull.clientId}:${pull.secret}`).toString('base64')}`,
        },
        body: form,
      });
      const body = (await response.json()) as Record<string, string>;
      if (!response.ok) return text(`exchange refused (${response.status}): ${body['error']}: ${body['error_description']}`, true);
      return me(`Bearer ${body['access_token']}`);
    });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      void transport.close();
      void mcp.close();
    });
    mcp.connect(transport).then(() => transport.handleRequest(req, res)).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    mcpUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
