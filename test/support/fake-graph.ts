import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, jwtVerify } from 'jose';

export interface FakeGraph {
  /** e.g. http://127.0.0.1:PORT — `GET /v1.0/me` answers for a valid token. */
  url: string;
  /** Every bearer token presented, in order (valid or not). */
  tokens: string[];
  close(): Promise<void>;
}

/**
 * A loopback stand-in for Microsoft Graph's `GET /v1.0/me`: it verifies the bearer token as a
 * resource server does (signature by a key of the issuer's keys endpoint, `iss`, `aud`
 * https://graph.microsoft.com, `scp` holding User.Read) and answers with the user it names, or 401
 * with Graph's error JSON (InvalidAuthenticationToken).
 */
export async function startFakeGraph(options: { issuer: string; jwksUri: string }): Promise<FakeGraph> {
  const keys = createRemoteJWKSet(new URL(options.jwksUri));
  const tokens: string[] = [];
  const server = createServer((req, res) => {
    const answer = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    const refuse = (message: string) => answer(401, { error: { code: 'InvalidAuthenticationToken', message } });
    if (req.method !== 'GET' || req.url !== '/v1.0/me') return answer(404, { error: { code: 'ResourceNotFound', message: 'not found' } });
    const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    if (!match) return refuse('Access token is empty.');
    tokens.push(match[1]!);
    jwtVerify(match[1]!, keys, { issuer: options.issuer, audience: 'https://graph.microsoft.com', algorithms: ['RS256'] })
      .then(({ payload }) => {
        if (!String(payload['scp'] ?? '').split(' ').includes('User.Read')) return refuse('Insufficient privileges: scp lacks User.Read.');
        answer(200, { id: payload['oid'], displayName: payload['name'], userPrincipalName: payload['preferred_username'] });
      })
      .catch((error: Error) => refuse(`Access token validation failure: ${error.message}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tokens,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
