import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, type JWTPayload, jwtVerify } from 'jose';

export interface FakeGraph {
  /** e.g. http://127.0.0.1:PORT — use as `upstream.entra.graphHost`. */
  url: string;
  /** Every bearer token presented, in order (valid or not). */
  tokens: string[];
  /** Every request, in order. */
  requests: { method: string; path: string; authorization: string | undefined; body: string }[];
  /** The group ids `POST /v1.0/me/getMemberGroups` answers with. */
  groups: string[];
  /** While set, requests fail: a status answers with Graph's error JSON; `reset` drops the connection. */
  outage: number | 'reset' | undefined;
  close(): Promise<void>;
}

/**
 * A loopback stand-in for the two Microsoft Graph calls the gateway and its backends make:
 * `GET /v1.0/me` (a backend's downstream token at work) and `POST /v1.0/me/getMemberGroups` (the
 * gateway after a groups overage). It verifies the bearer token as Graph does — signature by a key
 * of the issuer's keys endpoint, `iss`, `aud` https://graph.microsoft.com, `scp` holding User.Read —
 * or answers 401 with Graph's error JSON (InvalidAuthenticationToken).
 */
export async function startFakeGraph(options: { issuer: string; jwksUri: string }): Promise<FakeGraph> {
  const keys = createRemoteJWKSet(new URL(options.jwksUri));
  const graph: Omit<FakeGraph, 'url' | 'close'> = { tokens: [], requests: [], groups: [], outage: undefined };
  const verified = async (token: string): Promise<JWTPayload | string> => {
    try {
      const { payload } = await jwtVerify(token, keys, { issuer: options.issuer, audience: 'https://graph.microsoft.com', algorithms: ['RS256'] });
      return String(payload['scp'] ?? '').split(' ').includes('User.Read') ? payload : 'Insufficient privileges: scp lacks User.Read.';
    } catch (error) {
      return `Access token validation failure: ${(error as Error).message}`;
    }
  };
  const server = createServer(async (req, res) => {
    const body = (await readAll(req)).toString('utf8');
    graph.requests.push({ method: req.method ?? '', path: req.url ?? '', authorization: req.headers.authorization, body });
    if (graph.outage === 'reset') return void req.socket.destroy();
    const answer = (status: number, json: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(json));
    const error = (status: number, code: string, message = code) => answer(status, { error: { code, message, innerError: { 'request-id': randomUUID() } } });
    if (graph.outage !== undefined) return error(graph.outage, 'serviceNotAvailable');
    const route = `${req.method} ${req.url}`;
    if (route !== 'GET /v1.0/me' && route !== 'POST /v1.0/me/getMemberGroups') return error(404, 'Request_ResourceNotFound');
    const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    if (!match) return error(401, 'InvalidAuthenticationToken', 'Access token is empty.');
    graph.tokens.push(match[1]!);
    const claims = await verified(match[1]!);
    if (typeof claims === 'string') return error(401, 'InvalidAuthenticationToken', claims);
    if (route === 'GET /v1.0/me') return answer(200, { id: claims['oid'], displayName: claims['name'], userPrincipalName: claims['preferred_username'] });
    answer(200, { '@odata.context': 'https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)', value: graph.groups });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(graph, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  });
}

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
