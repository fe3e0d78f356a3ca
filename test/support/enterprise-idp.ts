import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt, exportJWK, generateKeyPair, type JWTPayload, jwtVerify, createLocalJWKSet, SignJWT } from 'jose';

/** A user of the enterprise IdP: the claims of their ID token and of the ID-JAGs issued for them. */
export interface EnterpriseUser {
  sub: string;
  email?: string;
  name?: string;
  roles?: string[];
}

export interface EnterpriseIdp {
  issuer: string;
  /** An ID token for the IdP client `idpClientId` (what the MCP client got at single sign-on). */
  idToken(user: EnterpriseUser): Promise<string>;
  /** An ID-JAG signed by this IdP: sensible claims, each overridable (undefined deletes), header too. */
  mintIdJag(claims: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  /** ID-JAGs issued by token exchange, in order. */
  issued: JWTPayload[];
  /** How often its JWK Set was fetched. */
  readonly jwksFetches: number;
  close(): Promise<void>;
}

const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
const ID_JAG_TYPE = 'urn:ietf:params:oauth:token-type:id-jag';

/**
 * A small enterprise IdP on loopback (standing for Okta/Keycloak): RFC 8414 metadata, a JWK Set,
 * and a token endpoint that does RFC 8693 token exchange of its own ID tokens for ID-JAGs
 * (draft-ietf-oauth-identity-assertion-authz-grant §4.3), mapping its client to the client's id
 * at the resource AS (§5) and granting at most `allowedScopes`.
 */
export async function startEnterpriseIdp(options: {
  idpClientId: string;
  idpClientSecret: string;
  /** The client's client_id at the gateway, put in the ID-JAG's client_id. */
  gatewayClientId: string;
  allowedScopes: string[];
  /** The jwks_uri its metadata names (default: its own /jwks). */
  jwksUri?: (issuer: string) => string;
}): Promise<EnterpriseIdp> {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' };
  const keys = createLocalJWKSet({ keys: [jwk] });
  const issued: JWTPayload[] = [];
  const users = new Map<string, EnterpriseUser>();
  let issuer = '';
  let jwksFetches = 0;

  async function sign(claims: Record<string, unknown>, header: Record<string, unknown>): Promise<string> {
    const payload = Object.fromEntries(Object.entries(claims).filter(([, v]) => v !== undefined));
    return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid: 'idp-1', ...header } as { alg: string }).sign(privateKey);
  }

  const server = createServer(async (req, res) => {
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', issuer);
    if (req.method === 'GET' && url.pathname === '/.well-known/oauth-authorization-server') {
      return json(200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        response_types_supported: ['code'],
        jwks_uri: options.jwksUri?.(issuer) ?? `${issuer}/jwks`,
        grant_types_supported: ['urn:ietf:params:oauth:grant-type:token-exchange'],
        identity_chaining_requested_token_types_supported: [ID_JAG_TYPE],
      });
    }
    if (req.method === 'GET' && url.pathname === '/jwks') {
      jwksFetches += 1;
      return json(200, { keys: [jwk] });
    }
    if (req.method === 'POST' && url.pathname === '/token') {
      let raw = '';
      for await (const chunk of req) raw += chunk;
      const form = new URLSearchParams(raw);
      if (form.get('client_id') !== options.idpClientId || form.get('client_secret') !== options.idpClientSecret) {
        return json(401, { error: 'invalid_client' });
      }
      if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange' || form.get('requested_token_type') !== ID_JAG_TYPE) {
        return json(400, { error: 'unsupported_grant_type' });
      }
      if (form.get('subject_token_type') !== ID_TOKEN_TYPE) return json(400, { error: 'invalid_request' });
      let subject: JWTPayload;
      try {
        // §4.3.3: the subject token is ours, and its audience is the authenticated client.
        ({ payload: subject } = await jwtVerify(form.get('subject_token') ?? '', keys, { issuer, audience: options.idpClientId }));
      } catch {
        return json(400, { error: 'invalid_grant', error_description: 'subject_token refused' });
      }
      const user = users.get(String(subject.sub));
      if (!user) return json(400, { error: 'invalid_grant' });
      const requested = (form.get('scope') ?? options.allowedScopes.join(' ')).split(' ').filter(Boolean);
      const scope = requested.filter((s) => options.allowedScopes.includes(s)).join(' ');
      const now = Math.floor(Date.now() / 1000);
      const claims = {
        iss: issuer,
        sub: user.sub,
        aud: form.get('audience'),
        resource: form.get('resource') ?? undefined,
        client_id: options.gatewayClientId,
        jti: randomUUID(),
        iat: now,
        exp: now + 300,
        scope,
        email: user.email,
        name: user.name,
        roles: user.roles,
      };
      const idJag = await sign(claims, { typ: 'oauth-id-jag+jwt' });
      issued.push(decodeJwt(idJag));
      return json(200, { issued_token_type: ID_JAG_TYPE, access_token: idJag, token_type: 'N_A', scope, expires_in: 300 });
    }
    json(404, { error: 'not_found' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    get issuer() {
      return issuer;
    },
    async idToken(user) {
      users.set(user.sub, user);
      const now = Math.floor(Date.now() / 1000);
      return sign({ iss: issuer, sub: user.sub, aud: options.idpClientId, iat: now, exp: now + 600, email: user.email, name: user.name }, { typ: 'JWT' });
    },
    async mintIdJag(claims, header = {}) {
      const now = Math.floor(Date.now() / 1000);
      return sign(
        { iss: issuer, sub: 'u-1', client_id: options.gatewayClientId, jti: randomUUID(), iat: now, exp: now + 300, scope: options.allowedScopes.join(' '), ...claims },
        { typ: 'oauth-id-jag+jwt', ...header },
      );
    },
    issued,
    get jwksFetches() {
      return jwksFetches;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
