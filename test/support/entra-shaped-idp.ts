/**
 * An Entra ID look-alike for tests: the dev IdP (oidc-provider) at `/{tenant}/v2.0` with Entra's
 * issuer shape and claims, plus the multi-tenant `organizations`/`common` metadata (issuer
 * `{host}/{tenantid}/v2.0`), recording every authorization request and token request it receives so
 * tests can assert on the wire.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { DevUser } from '../../src/config/schema.ts';
import { type DevIdp, type DevIdpClient, startDevIdp } from '../../src/idp/dev-idp.ts';

export interface EntraShapedIdp extends DevIdp {
  /** Use as `authorityHost`. */
  authorityHost: string;
  tenantId: string;
  /** Query of every authorization request, in order. */
  authorizeRequests: URLSearchParams[];
  /** Body of every token request, in order. */
  tokenRequests: URLSearchParams[];
}

const RAW = 'x-oidc-provider-metadata';

export const ENTRA_TEST_TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';

export const ENTRA_TEST_USERS: DevUser[] = [
  {
    login: 'adele@contoso.test',
    password: 'correct horse',
    name: 'Adele Vance',
    email: 'adele@contoso.test',
    oid: '8f3c2a1e-5b7d-4e9f-a1c3-2d4e6f8a0b1c',
    roles: ['Snippets.Write'],
    groups: ['4d2f6a8c-1e3b-4c5d-9f7a-0b2c4d6e8f1a'],
  },
];

/**
 * Starts the look-alike on a free loopback port. `client` with `jwks` makes the gateway's client
 * authenticate with a client_assertion (private_key_jwt) instead of a secret: the federated path.
 */
export async function startEntraShapedIdp(options: {
  client: DevIdpClient;
  tenantId?: string;
  users?: DevUser[];
}): Promise<EntraShapedIdp> {
  const tenantId = options.tenantId ?? ENTRA_TEST_TENANT;
  const authorizeRequests: URLSearchParams[] = [];
  const tokenRequests: URLSearchParams[] = [];
  let issuer = '';

  // Entra's metadata, from oidc-provider's: the issuer (a template for organizations/common), and
  // no RFC 9207 `iss` in authorization responses (Entra sends none).
  const serveMetadata = (metadataIssuer: string, res: ServerResponse) => {
    fetch(`${issuer}/.well-known/openid-configuration`, { headers: { [RAW]: '1' } })
      .then((r) => r.json() as Promise<Record<string, unknown>>)
      .then((metadata) => {
        const { authorization_response_iss_parameter_supported: _, ...rest } = metadata;
        const body = { ...rest, issuer: metadataIssuer };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      })
      .catch(() => res.writeHead(502).end());
  };

  const wrap =
    (next: RequestListener): RequestListener =>
    (req, res) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const discovery = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/.exec(url.pathname);
      const discoveryTenant = discovery?.[1];
      if (discoveryTenant && [tenantId, 'organizations', 'common'].includes(discoveryTenant) && !req.headers[RAW]) {
        serveMetadata(discoveryTenant === tenantId ? issuer : issuer.replace(`/${tenantId}/`, '/{tenantid}/'), res);
        return;
      }
      if (url.pathname.startsWith(`/${tenantId}/v2.0/auth`)) withoutIssInRedirects(res);
      if (url.pathname === `/${tenantId}/v2.0/auth`) authorizeRequests.push(new URLSearchParams(url.search));
      if (url.pathname === `/${tenantId}/v2.0/token` && req.method === 'POST') {
        recordBody(req, (body) => tokenRequests.push(new URLSearchParams(body)));
      }
      next(req, res);
    };

  const idp = await startDevIdp(
    {
      host: '127.0.0.1',
      port: 0,
      tenantId,
      users: options.users ?? ENTRA_TEST_USERS,
      allowInProduction: false,
    },
    options.client,
    { wrap },
  );
  issuer = idp.issuer;
  return { ...idp, authorityHost: idp.origin, tenantId, authorizeRequests, tokenRequests };
}

/** Entra's authorization responses carry no `iss` parameter (oidc-provider always adds it). */
function withoutIssInRedirects(res: ServerResponse): void {
  const setHeader = res.setHeader.bind(res);
  res.setHeader = ((name: string, value: number | string | readonly string[]) => {
    if (name.toLowerCase() === 'location' && typeof value === 'string' && value.includes('iss=')) {
      const location = new URL(value);
      location.searchParams.delete('iss');
      return setHeader(name, location.href);
    }
    return setHeader(name, value);
  }) as typeof res.setHeader;
}

/**
 * Records a request body without consuming it: oidc-provider reads bodies through `req.iterator()`,
 * so we tee that (reading the body ourselves would make it fall back to `req.body`, with a warning).
 */
function recordBody(req: IncomingMessage, onBody: (body: string) => void): void {
  const original = req.iterator.bind(req);
  req.iterator = ((iteratorOptions?: { destroyOnReturn?: boolean }) => {
    const source = original(iteratorOptions);
    return (async function* () {
      const chunks: Buffer[] = [];
      for await (const chunk of source) {
        chunks.push(chunk as Buffer);
        yield chunk;
      }
      onBody(Buffer.concat(chunks).toString('utf8'));
    })();
  }) as typeof req.iterator;
}
