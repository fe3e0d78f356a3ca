import { type JWTPayload, jwtVerify } from 'jose';
import { type EntraWorkloadsConfig, JWT_BEARER_GRANT } from '../config/schema.ts';
import type { UserIdentity } from '../ports/idp.ts';
import type { ClientRecord } from '../ports/records.ts';
import { joseReason } from './client-auth.ts';
import { issueAccessOnly } from './access-only.ts';
import type { AuthServerContext } from './context.ts';
import { OAuthError } from './errors.ts';
import { narrowScopes, resourceOrDefault } from './grant-scopes.ts';
import type { AccessOnlyTokens } from './grants.ts';
import { createConfiguredFetch, remoteJwks } from './remote-jwks.ts';

const CLOCK_SKEW_SECONDS = 30;
/** Entra's v1.0 token issuer (managed identity tokens for v1 resources); v2.0 is {authorityHost}/{tid}/v2.0. */
const ENTRA_V1_ISSUER_ORIGIN = 'https://sts.windows.net';
const KEYS_NOT_FETCHED = "Entra's signing keys could not be fetched";

/** An Entra app-only token that verified: its app (`azp`/`appid`), tenant and app roles. */
export interface EntraAppToken {
  payload: JWTPayload;
  tenantId: string;
  appId: string;
  roles: string[];
}

/**
 * Entra app-only tokens (managed identity, service principal) judged once, for both of their
 * uses at /token: as a jwt-bearer grant (a workload) and as a client_assertion (a configured
 * client with `entraApp`, client-auth.ts). Signed by Entra (its keys, fetched with the SSRF guard),
 * `aud` the gateway's app, `tid` an allowed tenant and the issuer that tenant's own, no `scp` (no user).
 */
export function createEntraAppTokens(ctx: AuthServerContext, config: EntraWorkloadsConfig) {
  const authority = config.authorityHost.replace(/\/$/, '');
  // Fetched with the SSRF guard (remote-jwks.ts); a bad URL fails the start, naming its key.
  const jwksUri = config.jwksUri ?? `${authority}/common/discovery/v2.0/keys`;
  const fetch = createConfiguredFetch({ dev: ctx.config.mode === 'dev' })(jwksUri, config.jwksUri ? 'workloads.entra.jwksUri' : 'workloads.entra.authorityHost');
  const keys = remoteJwks(new URL(jwksUri), fetch, { logger: ctx.logger, message: KEYS_NOT_FETCHED });

  /** True for an issuer of Entra's shape (any tenant): the assertion is then judged as an Entra app-only token. */
  function claims(issuer: unknown): boolean {
    return typeof issuer === 'string' && (issuer.startsWith(`${authority}/`) || issuer.startsWith(`${ENTRA_V1_ISSUER_ORIGIN}/`));
  }

  /** The token's app, or `refuse(reason)` thrown (invalid_grant for a grant, invalid_client for client authentication). */
  async function verify(assertion: string, refuse: (description: string) => OAuthError): Promise<EntraAppToken> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(assertion, keys, {
        audience: config.audiences,
        algorithms: ['RS256'],
        requiredClaims: ['iss', 'exp', 'tid'],
        currentDate: new Date(ctx.clock.nowSeconds() * 1000),
        clockTolerance: CLOCK_SKEW_SECONDS,
      }));
    } catch (error) {
      if (error instanceof OAuthError) throw error;
      throw refuse(`the Entra token is not valid: ${joseReason(error)}`);
    }
    const tenantId = payload['tid'];
    if (typeof tenantId !== 'string' || !config.tenants.includes(tenantId)) throw refuse(`tenant ${String(tenantId)} is not allowed`);
    // The issuer is the tenant's own (v2.0 or v1.0), never another tenant's.
    if (payload.iss !== `${authority}/${tenantId}/v2.0` && payload.iss !== `${ENTRA_V1_ISSUER_ORIGIN}/${tenantId}/`) {
      throw refuse('the Entra token issuer does not match its tenant');
    }
    // App-only: a delegated token carries `scp`; Entra's optional `idtyp` says `app` when present.
    if (payload['scp'] !== undefined || (payload['idtyp'] !== undefined && payload['idtyp'] !== 'app')) {
      throw refuse('the Entra token is a user token; workloads present app-only tokens');
    }
    const appId = payload['azp'] ?? payload['appid'];
    if (typeof appId !== 'string') throw refuse('the Entra token names no app (azp/appid)');
    const roles = Array.isArray(payload['roles']) ? payload['roles'].filter((r): r is string => typeof r === 'string') : [];
    return { payload, tenantId, appId, roles };
  }

  return { claims, verify };
}

export interface EntraWorkloadGrant {
  /** True for an issuer of Entra's shape (any tenant): the assertion is then judged as an Entra app-only token. */
  claims(issuer: unknown): boolean;
  redeem(client: ClientRecord | undefined, assertion: string, request: { scopes?: string[]; resource?: string; address: string }): Promise<AccessOnlyTokens>;
}

/**
 * An Entra app-only token (managed identity, service principal) as a jwt-bearer assertion
 * (RFC 7523 §2.1), judged by createEntraAppTokens, the app allow-listed or holding a required app
 * role. The app becomes a workload principal with its app roles; the token ends when the Entra
 * token does; no refresh token.
 */
export function createEntraWorkloadGrant(ctx: AuthServerContext, config: EntraWorkloadsConfig, appTokens = createEntraAppTokens(ctx, config)): EntraWorkloadGrant {
  async function redeem(client: ClientRecord | undefined, assertion: string, request: { scopes?: string[]; resource?: string; address: string }) {
    const { payload, tenantId, appId, roles } = await appTokens.verify(assertion, (description) => new OAuthError('invalid_grant', description));
    if (!config.allowedAppIds.includes(appId) && !roles.some((r) => config.requiredRoles.includes(r))) {
      throw new OAuthError('invalid_grant', `app ${appId} is not allowed: not listed and holds none of the required app roles`);
    }
    const resource = resourceOrDefault(ctx.resources, request.resource);
    const scopes = narrowScopes(request.scopes, resource.scopes);
    const user: UserIdentity = {
      kind: 'workload',
      issuer: payload.iss!,
      subject: appId,
      objectId: typeof payload['oid'] === 'string' ? payload['oid'] : undefined,
      tenantId,
      roles,
      groups: [],
    };
    const userKey = `app:${tenantId}|${appId}`;
    const clientId = client?.clientId ?? appId;
    return issueAccessOnly(
      ctx,
      { user, userKey, clientId, scopes, resource: resource.resource },
      { grantType: JWT_BEARER_GRANT, assertionIssuer: payload.iss, address: request.address, untilAt: payload.exp },
    );
  }

  return { claims: appTokens.claims, redeem };
}
