import { createPrivateKey, createPublicKey } from 'node:crypto';
import { jwtVerify } from 'jose';
import { type BackendConfig, entraResourceOf } from '../config/schema.ts';
import type { ClientRecord } from '../ports/records.ts';
import { joseReason } from './client-auth.ts';
import type { AuthServerContext } from './context.ts';
import type { DownstreamTokens, DownstreamTokenSpec } from './downstream-tokens.ts';
import { OAuthError } from './errors.ts';
import { type Params, param, requiredParam, splitScopes } from './params.ts';

/** RFC 8693 §3: token type identifiers. */
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const CLOCK_SKEW_SECONDS = 30;

/** RFC 8693 §2.2.1: the successful response. */
export interface ExchangedToken {
  access_token: string;
  issued_token_type: typeof ACCESS_TOKEN_TYPE;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
}

interface ExchangingBackend {
  backend: BackendConfig;
  /** The backend's resource URL: the `aud` of the identity assertions it receives. */
  resource: string;
}

/**
 * Token exchange at /token (RFC 8693) for backends that pull their downstream tokens: a backend,
 * authenticated as one of its `tokenExchange.clientIds`, presents an identity assertion it
 * received (`subject_token`, a JWT signed by the gateway, `aud` = that backend, `sid` = the user's
 * gateway grant) and gets one of its configured downstream tokens, chosen by `resource` or
 * `audience` (the token's Entra resource) and/or `scope` (a subset of its scopes). Undefined when
 * no backend pulls.
 */
export function createTokenExchange(ctx: AuthServerContext, downstream: DownstreamTokens | undefined) {
  const byClient = new Map<string, ExchangingBackend[]>();
  for (const resource of ctx.resources) {
    for (const clientId of resource.backend.tokenExchange?.clientIds ?? []) {
      byClient.set(clientId, [...(byClient.get(clientId) ?? []), { backend: resource.backend, resource: resource.resource }]);
    }
  }
  if (byClient.size === 0) return undefined;
  if (!downstream) throw new Error('backends[].tokenExchange: the upstream identity provider cannot mint downstream tokens');
  const publicKey = createPublicKey(createPrivateKey(ctx.config.secrets.signingKey));

  async function redeem(client: ClientRecord, body: Params): Promise<ExchangedToken> {
    const backends = byClient.get(client.clientId);
    if (!backends) throw new OAuthError('unauthorized_client', 'this client is no backend that may exchange tokens (backends[].tokenExchange)');
    const subjectToken = requiredParam(body, 'subject_token');
    const subjectTokenType = requiredParam(body, 'subject_token_type');
    // §2.2.2: an invalid or unacceptable subject_token is invalid_request.
    if (subjectTokenType !== JWT_TOKEN_TYPE) throw new OAuthError('invalid_request', `subject_token_type must be ${JWT_TOKEN_TYPE} (the identity assertion the backend received)`);
    if (param(body, 'actor_token') !== undefined) throw new OAuthError('invalid_request', 'actor_token is not supported');
    const requestedType = param(body, 'requested_token_type');
    if (requestedType !== undefined && requestedType !== ACCESS_TOKEN_TYPE) throw new OAuthError('invalid_request', `requested_token_type must be ${ACCESS_TOKEN_TYPE}`);
    let claims: Awaited<ReturnType<typeof jwtVerify>>['payload'];
    try {
      ({ payload: claims } = await jwtVerify(subjectToken, publicKey, {
        issuer: ctx.issuer,
        audience: backends.map((b) => b.resource),
        algorithms: ['ES256'],
        requiredClaims: ['exp', 'sid'],
        currentDate: new Date(ctx.clock.nowSeconds() * 1000),
        clockTolerance: CLOCK_SKEW_SECONDS,
      }));
    } catch (error) {
      throw new OAuthError('invalid_request', `subject_token is not an identity assertion for this backend: ${joseReason(error)}`);
    }
    const audience = [claims.aud ?? []].flat();
    const backend = backends.find((b) => audience.includes(b.resource))!.backend;
    const spec = chooseToken(backend, body);
    const token = await downstream!.tokenFor(String(claims['sid']), spec, { grantEnded: 'invalid_request' });
    return {
      access_token: token.accessToken,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: Math.max(1, token.expiresAt - ctx.clock.nowSeconds()),
      scope: spec.scopes.join(' '),
    };
  }

  return { redeem };
}

/**
 * The backend's downstream token the request names (RFC 8693 §2.1): `resource` (an absolute URI)
 * or `audience` (a name) is the token's Entra resource; `scope` a subset of its scopes. With
 * neither, the backend's only one. Anything else: invalid_target (§2.2.2) or invalid_scope.
 */
function chooseToken(backend: BackendConfig, body: Params): DownstreamTokenSpec {
  const tokens = backend.downstreamTokens ?? [];
  const target = param(body, 'resource') ?? param(body, 'audience');
  const scopes = splitScopes(param(body, 'scope'));
  let candidates = target === undefined ? tokens : tokens.filter((t) => entraResourceOf(t.scopes[0]!) === target.replace(/\/+$/, '').toLowerCase());
  if (candidates.length === 0) throw new OAuthError('invalid_target', `backend ${backend.name} may not get a token for ${target}`);
  if (scopes) {
    candidates = candidates.filter((t) => scopes.every((s) => t.scopes.includes(s)));
    if (candidates.length === 0) throw new OAuthError('invalid_scope', `backend ${backend.name} may not get a token for scope ${scopes.join(' ')}`);
    return { via: candidates[0]!.via, scopes };
  }
  if (candidates.length > 1) throw new OAuthError('invalid_request', `backend ${backend.name} has several downstream tokens: name one with resource, audience or scope`);
  return { via: candidates[0]!.via, scopes: candidates[0]!.scopes };
}
