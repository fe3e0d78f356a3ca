/**
 * An Entra ID look-alike for tests: the dev IdP (oidc-provider) at `/{tenant}/v2.0` with Entra's
 * issuer shape and claims, plus the multi-tenant `organizations`/`common` metadata (issuer
 * `{host}/{tenantid}/v2.0`), recording every authorization request and token request it receives so
 * tests can assert on the wire.
 *
 * Its token endpoint behaves as Entra documents (MicrosoftDocs/entra-docs, identity-platform):
 * - `scope` in responses is Entra's, not the request's: `.default` comes back as the permissions it
 *   stands for plus `.default`; an API's scopes come back alone, without `openid`/`profile`
 *   (v2-oauth2-auth-code-flow.md, scopes-oidc.md);
 * - a refresh asks for a subset of the authorize leg's scopes, of one resource, never `.default`
 *   mixed with other scopes of it (AADSTS70011), and gets an id_token only when it asks for `openid`;
 * - errors are Entra's JSON (`error_codes`, `timestamp`, `trace_id`, `correlation_id`), and any
 *   documented error can be injected for the next token requests (reference-error-codes.md);
 * - a refresh hands out a new refresh token and the old ones stay valid (refresh-tokens.md);
 * - clients with keys or federated credentials are authenticated as Entra does it.
 * Its id_tokens carry Entra's claims (id-token-claims-reference.md): a pairwise `sub`, `ver`, `nbf`,
 * `oid`/names only with `profile`, `email` only with `email`, groups only when configured (with an
 * overage mode); roles, groups and `tid` can change mid-grant (setEntraUser). Its discovery
 * documents are Entra's, at Entra's paths (test/contract/entra-discovery.test.ts).
 */
import { createHash, generateKeyPairSync, randomBytes, randomUUID, sign } from 'node:crypto';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, type JWK, jwtVerify } from 'jose';
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
  /** The URL each token request was sent to (Entra's path, e.g. /organizations/oauth2/v2.0/token). */
  tokenRequestUrls: string[];
  /** What the token endpoint answered, in order (status and JSON body as sent). */
  tokenResponses: { status: number; body: Record<string, unknown> }[];
  /** The next `count` token requests get this answer instead of the real one. */
  failNextTokenRequests(failure: InjectedFailure, count?: number): void;
  /** Changes what the user's next tokens say (roles, groups, a groups overage, another tid). */
  setEntraUser(login: string, change: EntraUserChange): void;
  /** From now on the look-alike's clock runs this far ahead of the gateway's (its tokens' `nbf`). */
  setClockAhead(seconds: number): void;
  /**
   * From now on a token for `scope` (refresh for another resource, on-behalf-of) is refused as Entra
   * refuses it: `consent_required` (AADSTS65001, invalid_grant + suberror) or `interaction_required`
   * (AADSTS50076, MFA); `undefined` grants it again, as does an interactive authorization request
   * that asks for it (the user consents, or passes MFA, there).
   */
  withholdConsent(scope: string, refusal: 'consent_required' | 'interaction_required' | undefined): void;
  /** Issuer of the look-alike's access tokens (Entra v2: `{authorityHost}/{tid}/v2.0`) and where their keys are. */
  accessTokenIssuer: string;
  jwksUri: string;
}

export interface InjectedFailure {
  status: number;
  /** JSON body (use entraError) or raw text (a proxy's HTML page). */
  body: Record<string, unknown> | string;
  headers?: Record<string, string>;
}

/**
 * A federated identity credential on the app registration: Entra accepts a client_assertion whose
 * issuer, subject and audience equal these exactly, signed by a key of the issuer's JWKS.
 */
export interface FederatedCredential {
  issuer: string;
  subject: string;
  audience: string;
  /** The issuer's signing keys (Entra fetches them from the issuer's discovery; here given). */
  jwks: { keys: JWK[] };
}

export interface EntraUserChange {
  roles?: string[];
  groups?: string[];
  /**
   * Entra's groups overage: no `groups`, `_claim_names`/`_claim_sources` pointing at Graph instead;
   * `'hasgroups'`: `hasgroups: true` instead, as in Entra's implicit-flow tokens.
   */
  groupsOverage?: boolean | 'hasgroups';
  tid?: string;
}

/** The look-alike's pairwise `sub` of a user (the dev IdP's own `sub`) in the app `clientId`. */
export function entraPairwiseSubject(sub: string, clientId: string): string {
  return createHash('sha256').update(`pairwise:${sub}:${clientId}`).digest('base64url').slice(0, 43);
}

/**
 * Entra's discovery document for `tenant` (a tenant id, `organizations` or `common`), field for
 * field as Entra serves it (test/fixtures/entra/ holds the real ones): Entra's paths under the
 * tenant asked for, the `{tenantid}` issuer template for organizations/common, pairwise subjects,
 * RS256, no `code_challenge_methods_supported` and no RFC 9207 `iss` in authorization responses.
 * The device code and Kerberos endpoints are listed but not served.
 */
export function entraMetadata(origin: string, tenant: string, tenantId: string): Record<string, unknown> {
  const base = `${origin}/${tenant}`;
  return {
    token_endpoint: `${base}/oauth2/v2.0/token`,
    token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
    jwks_uri: `${base}/discovery/v2.0/keys`,
    response_modes_supported: ['query', 'fragment', 'form_post'],
    subject_types_supported: ['pairwise'],
    id_token_signing_alg_values_supported: ['RS256'],
    response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
    scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
    issuer: `${origin}/${tenant === tenantId ? tenantId : '{tenantid}'}/v2.0`,
    request_uri_parameter_supported: false,
    userinfo_endpoint: 'https://graph.microsoft.com/oidc/userinfo',
    authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
    device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
    http_logout_supported: true,
    frontchannel_logout_supported: true,
    end_session_endpoint: `${base}/oauth2/v2.0/logout`,
    claims_supported: [
      'sub', 'iss', 'cloud_instance_name', 'cloud_instance_host_name', 'cloud_graph_host_name', 'msgraph_host', 'aud', 'exp',
      'iat', 'auth_time', 'acr', 'nonce', 'preferred_username', 'name', 'tid', 'ver', 'at_hash', 'c_hash', 'email',
    ],
    kerberos_endpoint: `${base}/kerberos`,
    tenant_region_scope: tenant === tenantId ? 'WW' : null,
    cloud_instance_name: 'microsoftonline.com',
    cloud_graph_host_name: 'graph.windows.net',
    msgraph_host: 'graph.microsoft.com',
    rbac_url: 'https://pas.windows.net',
  };
}

/** Entra's endpoint paths (under /{tenant}/) → oidc-provider's routes (under /{tenant}/v2.0/). */
const ROUTES: Record<string, string> = {
  'oauth2/v2.0/authorize': 'auth',
  'oauth2/v2.0/token': 'token',
  'oauth2/v2.0/logout': 'session/end',
  'discovery/v2.0/keys': 'jwks',
};
const OIDC_SCOPES = new Set(['openid', 'profile', 'email', 'offline_access']);
const GRAPH = 'https://graph.microsoft.com';
const ACCESS_TOKEN_LIFETIME_SECONDS = 3600;

export const ENTRA_TEST_TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
/** The claims challenge an interaction_required (MFA) refusal carries: a Conditional Access policy id. */
export const MFA_CLAIMS_CHALLENGE = '{"access_token":{"capolids":{"essential":true,"values":["5b1c3e2a-7d4f-4a8b-9c6d-1e2f3a4b5c6d"]}}}';

/** A custom API's scope, as an app registration exposes it. */
export const SNIPPETS_API_SCOPE = 'api://3f0e5c2a-snippets/Snippets.Read';

/**
 * The gateway's own API (its app registration exposes it; Application ID URI `api://gateway-app`):
 * a user's token for it is what an on-behalf-of request presents.
 */
export const GATEWAY_API_SCOPE = 'api://gateway-app/access_as_user';

/** Scopes the look-alike knows, and what `.default` of each resource expands to. */
const PERMISSIONS: Record<string, string[]> = {
  [GRAPH]: [`${GRAPH}/User.Read`],
  'api://3f0e5c2a-snippets': [SNIPPETS_API_SCOPE],
  'api://gateway-app': [GATEWAY_API_SCOPE],
};
const KNOWN_SCOPES = [
  'User.Read',
  `${GRAPH}/User.Read`,
  `${GRAPH}/.default`,
  SNIPPETS_API_SCOPE,
  'api://3f0e5c2a-snippets/.default',
  GATEWAY_API_SCOPE,
];

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

/** Entra's numbers for the errors oidc-provider answers with (reference-error-codes.md). */
const AADSTS: Record<string, number> = {
  invalid_grant: 70000,
  invalid_scope: 70011,
  invalid_client: 7000215,
  invalid_request: 900144,
  unauthorized_client: 700016,
  unsupported_grant_type: 70003,
};

/** An error body as Entra sends it. */
export function entraError(
  error: string,
  code: number,
  extra: { suberror?: string; description?: string; traceId?: string; correlationId?: string } = {},
): Record<string, unknown> {
  const traceId = extra.traceId ?? randomUUID();
  const correlationId = extra.correlationId ?? randomUUID();
  const timestamp = new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  return {
    error,
    error_description: `AADSTS${code}: ${extra.description ?? error} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
    error_codes: [code],
    timestamp,
    trace_id: traceId,
    correlation_id: correlationId,
    error_uri: `https://login.microsoftonline.com/error?code=${code}`,
    ...(extra.suberror ? { suberror: extra.suberror } : {}),
  };
}

/**
 * Starts the look-alike on a free loopback port. `client` with `jwks` makes the gateway's client
 * authenticate with a client_assertion (private_key_jwt) instead of a secret: the federated path.
 */
export async function startEntraShapedIdp(options: {
  client: DevIdpClient;
  tenantId?: string;
  users?: DevUser[];
  /** The app trusts these federated credentials (then the client has no secret or keys of its own). */
  federatedCredentials?: FederatedCredential[];
  /** false: the app registration has no groups claim configured (Entra then sends none). Default true. */
  groupClaims?: boolean;
  /** The app's Application ID URIs (`api://…`): an on-behalf-of assertion's `aud` is one of them or the client id. */
  appIdUris?: string[];
}): Promise<EntraShapedIdp> {
  const tenantId = options.tenantId ?? ENTRA_TEST_TENANT;
  const authorizeRequests: URLSearchParams[] = [];
  const tokenRequests: URLSearchParams[] = [];
  const tokenRequestUrls: string[] = [];
  const tokenResponses: EntraShapedIdp['tokenResponses'] = [];
  const failures: InjectedFailure[] = [];
  // A client with keys or federated credentials is authenticated here, as Entra does it (the
  // assertion's `aud` is the token URL the request went to, /organizations/… included), and then to
  // oidc-provider with a secret only the look-alike knows.
  const federated = options.federatedCredentials;
  const clientKeys = options.client.jwks;
  const internalSecret = randomBytes(24).toString('base64url');
  const client: DevIdpClient =
    federated || clientKeys
      ? { clientId: options.client.clientId, redirectUris: options.client.redirectUris, clientSecret: internalSecret }
      : options.client;
  const tenants = [tenantId, 'organizations', 'common'];
  const refreshAliases = new Map<string, string>();
  let clockAheadSeconds = 0;
  let origin = '';
  // Entra-shaped JWT access tokens (for an API's scopes, and every downstream token) are signed
  // with this key, published beside oidc-provider's at the keys endpoint.
  const accessTokenKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const accessTokenJwk: JWK = { ...(accessTokenKey.publicKey.export({ format: 'jwk' }) as JWK), alg: 'RS256', use: 'sig', kid: `at-${randomBytes(6).toString('hex')}` };
  const users = options.users ?? ENTRA_TEST_USERS;
  /** The look-alike's pairwise `sub` of each user in the gateway's app → the user. */
  const userBySubject = new Map(users.map((u) => [entraPairwiseSubject(devSubject(tenantId, u.login), options.client.clientId), u]));
  /** Which user each refresh token alias belongs to (Entra's refresh tokens are the user's, for any resource). */
  const aliasUsers = new Map<string, DevUser>();
  const withheld = new Map<string, 'consent_required' | 'interaction_required'>();
  const appAudiences = new Set([options.client.clientId, ...(options.appIdUris ?? [])]);

  const serveMetadata = (tenant: string, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(entraMetadata(origin, tenant, tenantId)));
  };

  const wrap =
    (next: RequestListener): RequestListener =>
    (req, res) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const discovery = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/.exec(url.pathname);
      if (discovery && tenants.includes(discovery[1]!)) {
        serveMetadata(discovery[1]!, res);
        return;
      }
      // Entra's paths, for the tenant, organizations and common alike, onto oidc-provider's routes.
      const entraPath = /^\/([^/]+)\/(oauth2\/v2\.0\/authorize|oauth2\/v2\.0\/token|oauth2\/v2\.0\/logout|discovery\/v2\.0\/keys)$/.exec(url.pathname);
      const requestedUrl = `${origin}${url.pathname}`;
      if (entraPath && tenants.includes(entraPath[1]!)) {
        url.pathname = `/${tenantId}/v2.0/${ROUTES[entraPath[2]!]}`;
        req.url = url.pathname + url.search;
      }
      if (url.pathname === `/${tenantId}/v2.0/jwks`) rewriteJson(res, (_status, json) => ({ keys: [...(json['keys'] as JWK[]), accessTokenJwk] }));
      if (url.pathname.startsWith(`/${tenantId}/v2.0/auth`)) withoutIssInRedirects(res);
      if (url.pathname === `/${tenantId}/v2.0/auth`) {
        authorizeRequests.push(new URLSearchParams(url.search));
        // The interactive request AADSTS65001/50076 asks for: the user consents (or passes MFA) on
        // Entra's pages, so the scope is given from then on.
        for (const scope of (url.searchParams.get('scope') ?? '').split(' ').filter(Boolean)) withheld.delete(qualified(scope));
      }
      if (url.pathname === `/${tenantId}/v2.0/token` && req.method === 'POST') {
        tokenEndpoint(req, res, next, requestedUrl).catch(() => {
          if (!res.headersSent) res.writeHead(500).end();
        });
        return;
      }
      next(req, res);
    };

  async function tokenEndpoint(req: IncomingMessage, res: ServerResponse, next: RequestListener, tokenUrl: string): Promise<void> {
    const raw = await readAll(req);
    const body = new URLSearchParams(raw.toString('utf8'));
    tokenRequests.push(body);
    tokenRequestUrls.push(tokenUrl);
    const failure = failures.shift();
    if (failure) {
      const text = typeof failure.body === 'string' ? failure.body : JSON.stringify(failure.body);
      const type = typeof failure.body === 'string' ? 'text/html' : 'application/json; charset=utf-8';
      tokenResponses.push({ status: failure.status, body: typeof failure.body === 'string' ? {} : failure.body });
      res.writeHead(failure.status, { 'content-type': type, 'cache-control': 'no-store', ...failure.headers }).end(text);
      return;
    }
    // Entra rotates refresh tokens but keeps the old ones valid (refresh-tokens.md): every refresh
    // token handed out is an alias of oidc-provider's one (which this look-alike never rotates).
    const presented = body.get('refresh_token');
    const real = presented === null ? undefined : refreshAliases.get(presented);
    const inner = new URLSearchParams(body);
    if (real) inner.set('refresh_token', real);
    if (federated || clientKeys) {
      const refused = federated
        ? await federatedCredentialError(federated, body)
        : await certificateAssertionError(clientKeys!, options.client.clientId, body, tokenUrl);
      if (refused) {
        tokenResponses.push({ status: 401, body: refused });
        res.writeHead(401, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(refused));
        return;
      }
      inner.delete('client_assertion');
      inner.delete('client_assertion_type');
      inner.set('client_secret', internalSecret);
    }
    const requested = (body.get('scope') ?? '').split(' ').filter(Boolean);
    const local = await downstreamGrant(body, requested, real !== undefined);
    if (local) {
      tokenResponses.push(local);
      res.writeHead(local.status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(JSON.stringify(local.body));
      return;
    }
    const forwarded = Buffer.from(inner.toString());
    req.headers['content-length'] = String(forwarded.length);
    if (body.get('grant_type') === 'refresh_token') {
      const refused = refreshScopeError(requested);
      if (refused) {
        const error = entraError('invalid_scope', 70011, { description: refused });
        tokenResponses.push({ status: 400, body: error });
        res.writeHead(400, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(error));
        return;
      }
    }
    rewriteJson(res, (status, json) => {
      const answer = status === 200 ? entraTokenResponse(json, body.get('grant_type'), requested) : entraErrorOf(json);
      const idTokenSubject = typeof answer['id_token'] === 'string' ? decodeJwt(answer['id_token']).sub : undefined;
      const user = (idTokenSubject && userBySubject.get(idTokenSubject)) || (presented ? aliasUsers.get(presented) : undefined);
      // For an API's scopes Entra issues a JWT for that API (the user's token an on-behalf-of
      // request presents); for Graph it stays oidc-provider's opaque token.
      const apiScopes = String(answer['scope'] ?? '').split(' ').filter((s) => !OIDC_SCOPES.has(s) && resourceOf(qualified(s)) !== GRAPH.toLowerCase());
      if (status === 200 && user && apiScopes.length) answer['access_token'] = accessToken(user, apiScopes);
      if (typeof answer['refresh_token'] === 'string') {
        const alias = `${randomBytes(32).toString('base64url')}.entra`;
        refreshAliases.set(alias, answer['refresh_token']);
        if (user) aliasUsers.set(alias, user);
        answer['refresh_token'] = alias;
      }
      tokenResponses.push({ status, body: answer });
      return answer;
    });
    replayBody(req, forwarded);
    next(req, res);
  }

  /**
   * An Entra v2 access token (access-token-claims-reference.md): `aud` the resource, `scp` the
   * permissions by short name, `azp` the app that asked, the user's `oid`/`tid`, a pairwise `sub`
   * per resource; RS256 with a key of the tenant's keys endpoint.
   */
  function accessToken(user: DevUser, scopes: string[]): string {
    const qualifiedScopes = scopes.map(qualified);
    const resource = resourceOf(qualifiedScopes[0]!);
    const now = Math.floor(Date.now() / 1000) + clockAheadSeconds;
    const permissions = qualifiedScopes.flatMap((s) => (s.endsWith('/.default') ? (PERMISSIONS[resource] ?? []) : [s]));
    const claims = {
      aud: resource === GRAPH.toLowerCase() ? GRAPH : resource,
      iss: `${origin}/${tenantId}/v2.0`,
      iat: now,
      nbf: now,
      exp: now + ACCESS_TOKEN_LIFETIME_SECONDS,
      azp: options.client.clientId,
      azpacr: '1',
      name: user.name,
      oid: user.oid,
      preferred_username: user.login,
      scp: permissions.map((p) => p.slice(p.lastIndexOf('/') + 1)).join(' '),
      sub: entraPairwiseSubject(devSubject(tenantId, user.login), resource),
      tid: tenantId,
      uti: randomBytes(16).toString('base64url'),
      ver: '2.0',
    };
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const signingInput = `${encode({ typ: 'JWT', alg: 'RS256', kid: accessTokenJwk.kid })}.${encode(claims)}`;
    return `${signingInput}.${sign('sha256', Buffer.from(signingInput), accessTokenKey.privateKey).toString('base64url')}`;
  }

  /**
   * The grants the look-alike answers itself, as Entra does: a refresh for another resource's
   * scopes (a refresh token is the user's for every resource the app may reach; no `openid` asked,
   * so no id_token) and on-behalf-of (v2-oauth2-on-behalf-of-flow.md: `requested_token_use`, the
   * assertion a token for this app). Undefined: oidc-provider answers.
   */
  async function downstreamGrant(body: URLSearchParams, requested: string[], knownRefreshToken: boolean): Promise<{ status: number; body: Record<string, unknown> } | undefined> {
    const grantType = body.get('grant_type');
    const refreshForResource = grantType === 'refresh_token' && knownRefreshToken && requested.length > 0 && !requested.includes('openid');
    const onBehalfOf = grantType === 'urn:ietf:params:oauth:grant-type:jwt-bearer';
    if (!refreshForResource && !onBehalfOf) return undefined;
    const refuse = (error: string, code: number, extra: Parameters<typeof entraError>[2] = {}) => ({ status: 400, body: entraError(error, code, extra) });
    // Clients with keys or federated credentials were authenticated above; a secret is checked here.
    if (!federated && !clientKeys && (body.get('client_id') !== options.client.clientId || body.get('client_secret') !== options.client.clientSecret)) {
      return { status: 401, body: entraError('invalid_client', 7000215, { description: 'Invalid client secret provided.' }) };
    }
    const scopeError = refreshScopeError(requested);
    if (scopeError) return refuse('invalid_scope', 70011, { description: scopeError });
    let user: DevUser | undefined;
    if (refreshForResource) {
      user = aliasUsers.get(body.get('refresh_token')!);
      if (!user) return refuse('invalid_grant', 70000, { description: 'The provided value for the input parameter refresh_token is not valid.' });
    } else {
      if (body.get('requested_token_use') !== 'on_behalf_of') {
        return refuse('invalid_request', 900144, { description: "The request body must contain the following parameter: 'requested_token_use'." });
      }
      let claims: Awaited<ReturnType<typeof jwtVerify>>['payload'];
      try {
        ({ payload: claims } = await jwtVerify(body.get('assertion') ?? '', createLocalJWKSet({ keys: [accessTokenJwk] }), { issuer: `${origin}/${tenantId}/v2.0` }));
      } catch (error) {
        return refuse('invalid_grant', 50013, { description: `Assertion failed signature validation. [Reason - ${(error as Error).message}]` });
      }
      const audiences = [claims.aud ?? []].flat();
      if (!audiences.some((a) => appAudiences.has(a))) {
        return refuse('invalid_grant', 50013, {
          description: `Assertion audience does not match the Client app presenting the assertion. The audience in the assertion was '${audiences.join(' ')}' and the expected audience is '${options.client.clientId}'`,
        });
      }
      user = users.find((u) => u.oid === claims['oid']);
      if (!user) return refuse('invalid_grant', 50034, { description: 'The user account does not exist in the directory.' });
    }
    const resourceScopes = requested.filter((s) => !OIDC_SCOPES.has(s));
    for (const scope of resourceScopes.map(qualified)) {
      const refusal = withheld.get(scope);
      if (refusal === 'consent_required') {
        return refuse('invalid_grant', 65001, {
          suberror: 'consent_required',
          description: `The user or administrator has not consented to use the application with ID '${options.client.clientId}'. Send an interactive authorization request for this user and resource.`,
        });
      }
      if (refusal === 'interaction_required') {
        const refused = refuse('interaction_required', 50076, {
          description: `Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '${resourceOf(scope)}'.`,
        });
        // The Conditional Access policy's claims challenge, for the interactive request (claims-challenge.md).
        refused.body['claims'] = MFA_CLAIMS_CHALLENGE;
        return refused;
      }
    }
    const qualifiedScopes = resourceScopes.map(qualified);
    const resource = resourceOf(qualifiedScopes[0]!);
    const answer: Record<string, unknown> = {
      token_type: 'Bearer',
      scope: [...new Set(qualifiedScopes.flatMap((s) => (s.endsWith('/.default') ? [...(PERMISSIONS[resource] ?? []), s] : [s])))].join(' '),
      expires_in: ACCESS_TOKEN_LIFETIME_SECONDS,
      ext_expires_in: ACCESS_TOKEN_LIFETIME_SECONDS,
      access_token: accessToken(user, resourceScopes),
    };
    if (refreshForResource) {
      const alias = `${randomBytes(32).toString('base64url')}.entra`;
      refreshAliases.set(alias, refreshAliases.get(body.get('refresh_token')!)!);
      aliasUsers.set(alias, user);
      answer['refresh_token'] = alias;
    }
    return { status: 200, body: answer };
  }

  const idp = await startDevIdp(
    {
      host: '127.0.0.1',
      port: 0,
      tenantId,
      users,
      allowInProduction: false,
    },
    client,
    {
      wrap,
      extraScopes: KNOWN_SCOPES,
      // Entra's id_token claims (id-token-claims-reference.md): `oid`, names only with `profile`;
      // `email` only with `email` (and no `email_verified`); groups only when configured; `ver`, `nbf`.
      claims: {
        openid: ['sub', 'tid', 'ver', 'nbf', 'roles', ...(options.groupClaims === false ? [] : ['groups', 'hasgroups'])],
        profile: ['oid', 'name', 'preferred_username'],
        email: ['email'],
      },
      issuanceClaims: () => ({ ver: '2.0', nbf: Math.floor(Date.now() / 1000) + clockAheadSeconds }),
      // Entra's `sub` is pairwise: the same user has another `sub` in every app.
      pairwiseSubject: (sub, clientId) => entraPairwiseSubject(sub, clientId),
      rotateRefreshToken: false,
    },
  );
  origin = idp.origin;
  return {
    ...idp,
    authorityHost: idp.origin,
    tenantId,
    authorizeRequests,
    tokenRequests,
    tokenRequestUrls,
    tokenResponses,
    failNextTokenRequests(failure, count = 1) {
      for (let i = 0; i < count; i++) failures.push(failure);
    },
    setClockAhead(seconds) {
      clockAheadSeconds = seconds;
    },
    withholdConsent(scope, refusal) {
      if (refusal) withheld.set(qualified(scope), refusal);
      else withheld.delete(qualified(scope));
    },
    accessTokenIssuer: `${idp.origin}/${tenantId}/v2.0`,
    jwksUri: `${idp.origin}/${tenantId}/discovery/v2.0/keys`,
    setEntraUser(login, change) {
      const claims: Record<string, unknown> = {};
      if (change.roles) claims['roles'] = change.roles.length ? change.roles : undefined;
      if (change.groups) claims['groups'] = change.groups.length ? change.groups : undefined;
      if (change.tid) claims['tid'] = change.tid;
      if (change.groupsOverage !== undefined) {
        // Entra's overage: the groups are left out, and the token says where to get them.
        const distributed = change.groupsOverage === true;
        if (change.groupsOverage) claims['groups'] = undefined;
        claims['_claim_names'] = distributed ? { groups: 'src1' } : undefined;
        claims['_claim_sources'] = distributed ? { src1: { endpoint: `${GRAPH}/v1.0/users/${login}/getMemberObjects` } } : undefined;
        claims['hasgroups'] = change.groupsOverage === 'hasgroups' ? true : undefined;
      }
      idp.setUserClaims(login, claims);
    },
  };
}

/**
 * Entra's check of a federated client_assertion (workload-identity-federation.md): a credential
 * with exactly its issuer, subject and audience, and a valid signature by that issuer's key;
 * otherwise 401 invalid_client (AADSTS700211 issuer, 700213 subject, 700212 audience).
 */
async function federatedCredentialError(credentials: FederatedCredential[], body: URLSearchParams): Promise<Record<string, unknown> | undefined> {
  const assertion = body.get('client_assertion');
  if (body.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' || !assertion) {
    return entraError('invalid_client', 7000218, { description: "The request body must contain the following parameter: 'client_assertion' or 'client_secret'." });
  }
  let claims: ReturnType<typeof decodeJwt>;
  try {
    claims = decodeJwt(assertion);
  } catch {
    return entraError('invalid_client', 50027, { description: 'JWT token is invalid or malformed.' });
  }
  const byIssuer = credentials.filter((c) => c.issuer === claims.iss);
  if (!byIssuer.length) return entraError('invalid_client', 700211, { description: `No matching federated identity record found for presented assertion issuer '${claims.iss}'.` });
  const bySubject = byIssuer.filter((c) => c.subject === claims.sub);
  if (!bySubject.length) return entraError('invalid_client', 700213, { description: `No matching federated identity record found for presented assertion subject '${claims.sub}'.` });
  const audiences = [claims.aud ?? []].flat();
  const credential = bySubject.find((c) => audiences.includes(c.audience));
  if (!credential) return entraError('invalid_client', 700212, { description: `No matching federated identity record found for presented assertion audience '${audiences.join(' ')}'.` });
  try {
    await jwtVerify(assertion, createLocalJWKSet(credential.jwks), { issuer: credential.issuer, subject: credential.subject, audience: credential.audience });
  } catch {
    return entraError('invalid_client', 700027, { description: 'Client assertion failed signature validation.' });
  }
  return undefined;
}

/**
 * Entra's check of a certificate credential (certificate-credentials.md): a JWT signed by a key of a
 * registered certificate, named by its `x5t#S256` (or `x5t`) when the key has one, `iss` = `sub` =
 * the client id, `aud` = the token URL the request was sent to.
 */
async function certificateAssertionError(
  jwks: { keys: JWK[] },
  clientId: string,
  body: URLSearchParams,
  tokenUrl: string,
): Promise<Record<string, unknown> | undefined> {
  const assertion = body.get('client_assertion');
  if (body.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' || !assertion) {
    return entraError('invalid_client', 7000218, { description: "The request body must contain the following parameter: 'client_assertion' or 'client_secret'." });
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(assertion);
  } catch {
    return entraError('invalid_client', 50027, { description: 'JWT token is invalid or malformed.' });
  }
  const named = jwks.keys.filter(
    (k) => (k['x5t#S256'] === undefined && k.x5t === undefined) || k['x5t#S256'] === header['x5t#S256'] || k.x5t === header.x5t,
  );
  if (!named.length) return entraError('invalid_client', 700027, { description: 'The certificate with identifier used to sign the client assertion is not registered on application.' });
  try {
    await jwtVerify(assertion, createLocalJWKSet({ keys: named }), { issuer: clientId, subject: clientId, audience: tokenUrl });
  } catch (error) {
    return entraError('invalid_client', 700027, { description: `Client assertion failed validation: ${(error as Error).message}` });
  }
  return undefined;
}

/** Entra's refresh rules on `scope` (v2-oauth2-auth-code-flow.md; AADSTS70011): one resource, `.default` alone. */
function refreshScopeError(requested: string[]): string | undefined {
  const resourceScopes = requested.filter((s) => !OIDC_SCOPES.has(s)).map(qualified);
  const resources = new Set(resourceScopes.map(resourceOf));
  if (resources.size > 1) return `The provided value for the input parameter 'scope' is not valid: scopes of ${resources.size} resources.`;
  const dotDefault = resourceScopes.find((s) => s.endsWith('/.default'));
  if (dotDefault && resourceScopes.length > 1) {
    return `The provided value for the input parameter 'scope' is not valid. ${dotDefault} cannot be combined with other scopes.`;
  }
  return undefined;
}

/**
 * A successful token response as Entra shapes it: `scope` lists the resource's permissions (fully
 * qualified; `.default` expanded, plus `.default`), with the OIDC scopes only for Graph, never
 * offline_access; a refresh that did not ask for `openid` gets no id_token.
 */
function entraTokenResponse(json: Record<string, unknown>, grantType: string | null, requested: string[]): Record<string, unknown> {
  const asked = grantType === 'refresh_token' && requested.length ? requested : String(json['scope'] ?? '').split(' ').filter(Boolean);
  const resourceScopes = asked.filter((s) => !OIDC_SCOPES.has(s)).map(qualified);
  const resource = resourceScopes.length ? resourceOf(resourceScopes[0]!) : GRAPH;
  const permissions = resourceScopes.flatMap((s) => (s.endsWith('/.default') ? [...(PERMISSIONS[resource] ?? []), s] : [s]));
  const oidc = resource === GRAPH ? asked.filter((s) => OIDC_SCOPES.has(s) && s !== 'offline_access') : [];
  const answer: Record<string, unknown> = { ...json, scope: [...new Set([...oidc, ...permissions])].join(' ') };
  if (grantType === 'refresh_token' && !asked.includes('openid')) delete answer['id_token'];
  return answer;
}

/** oidc-provider's error body, made Entra's. */
function entraErrorOf(json: Record<string, unknown>): Record<string, unknown> {
  const error = String(json['error'] ?? 'server_error');
  return entraError(error, AADSTS[error] ?? 90000, { description: String(json['error_description'] ?? error) });
}

/** The dev IdP's own `sub` of a user (src/idp/dev-idp.ts toAccount), before Entra's pairwise mapping. */
function devSubject(tenantId: string, login: string): string {
  return createHash('sha256').update(`sub:${tenantId}:${login}`).digest('base64url').slice(0, 43);
}

/** Entra reads a scope without a resource as a Microsoft Graph scope. */
function qualified(scope: string): string {
  return scope.includes('/') ? scope : `${GRAPH}/${scope}`;
}

function resourceOf(scope: string): string {
  return scope.slice(0, scope.lastIndexOf('/')).toLowerCase();
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

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Hands an already read body to oidc-provider, which reads bodies through `req.iterator()` while
 * `req.readable` (else it falls back to `req.body`, with a warning).
 */
function replayBody(req: IncomingMessage, body: Buffer): void {
  Object.defineProperty(req, 'readable', { value: true, configurable: true });
  req.iterator = (async function* () {
    yield body;
  }) as unknown as typeof req.iterator;
}

/** Lets `rewrite` change a JSON response before it is sent (oidc-provider ends with one `res.end(body)`). */
function rewriteJson(res: ServerResponse, rewrite: (status: number, json: Record<string, unknown>) => Record<string, unknown>): void {
  const end = res.end.bind(res) as (chunk?: unknown) => ServerResponse;
  res.end = ((chunk?: unknown) => {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk)) as Record<string, unknown>;
    } catch {
      return end(chunk);
    }
    const text = JSON.stringify(rewrite(res.statusCode, json));
    if (!res.headersSent) res.setHeader('content-length', Buffer.byteLength(text));
    return end(text);
  }) as typeof res.end;
}
