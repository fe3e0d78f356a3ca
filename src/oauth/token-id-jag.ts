import { decodeProtectedHeader, type JWTPayload, jwtVerify } from 'jose';
import type { EnterpriseAuthorizationConfig, IdJagIssuerConfig } from '../config/schema.ts';
import type { UserIdentity } from '../ports/idp.ts';
import type { ClientRecord } from '../ports/records.ts';
import { joseReason } from './client-auth.ts';
import { issueAccessOnly } from './access-only.ts';
import { createIdJagIssuerKeys } from './id-jag-issuer-keys.ts';
import type { AuthServerContext } from './context.ts';
import { OAuthError } from './errors.ts';
import { narrowScopes } from './grant-scopes.ts';
import { type AccessOnlyTokens, userKeyOf } from './grants.ts';
import { keys } from './keys.ts';
import { splitScopes } from './params.ts';
import { findResource } from './resources.ts';

/** draft-ietf-oauth-identity-assertion-authz-grant §3: the JWT `typ` of an ID-JAG. */
const ID_JAG_TYP = 'oauth-id-jag+jwt';
/** MCP enterprise-managed-authorization §6: the profile advertised in AS metadata. */
export const ID_JAG_GRANT_PROFILE = 'urn:ietf:params:oauth:grant-profile:id-jag';
const CLOCK_SKEW_SECONDS = 30;

export interface IdJagGrant {
  /** True when `iss` is a trusted ID-JAG issuer (the assertion is then judged as an ID-JAG). */
  trusts(issuer: unknown): boolean;
  redeem(client: ClientRecord | undefined, assertion: string, request: { scopes?: string[]; resource?: string; address: string }): Promise<AccessOnlyTokens>;
}

/**
 * The ID-JAG grant at /token (draft-ietf-oauth-identity-assertion-authz-grant §4.4.1; MCP
 * enterprise-managed-authorization §5.1, §7.4, §7.6): the enterprise IdP decided, so no consent
 * page; an access token bound to the one resource the ID-JAG names, no refresh token.
 */
export function createIdJagGrant(ctx: AuthServerContext, config: EnterpriseAuthorizationConfig): IdJagGrant {
  const keysOf = createIdJagIssuerKeys({ dev: ctx.config.mode === 'dev', logger: ctx.logger });
  const issuers = new Map(config.issuers.map((issuer, i) => [issuer.issuer, { config: issuer, keys: keysOf(issuer, i) }]));

  async function redeem(client: ClientRecord | undefined, assertion: string, request: { scopes?: string[]; resource?: string; address: string }) {
    // Draft §8.1 and MCP §7.5.1: only for clients that authenticated (confidential clients).
    if (!client || client.tokenEndpointAuthMethod === 'none') {
      throw new OAuthError('invalid_client', 'an ID-JAG is redeemed only by an authenticated confidential client');
    }
    // RFC 8725 §3.11, draft §3: typed JWT, so no other JWT of the IdP passes as an ID-JAG.
    if (decodeProtectedHeader(assertion).typ !== ID_JAG_TYP) throw new OAuthError('invalid_grant', `the assertion's typ must be ${ID_JAG_TYP}`);
    const { payload, issuer } = await verify(assertion);
    const now = ctx.clock.nowSeconds();
    // MCP §7.4.2: short-lived.
    if (payload.exp! - payload.iat! > config.maxLifetimeSeconds) {
      throw new OAuthError('invalid_grant', `the ID-JAG lives longer than ${config.maxLifetimeSeconds} seconds`);
    }
    // Draft §4.4.1: the same client as the one that authenticated.
    if (payload['client_id'] !== client.clientId) throw new OAuthError('invalid_grant', 'the ID-JAG was issued to another client (client_id)');
    // RFC 7521 §5.2 spirit: claims that would constrain the token in ways the gateway does not
    // enforce (RFC 7800 proof of possession, RFC 9396 details) must not be silently dropped.
    for (const claim of ['cnf', 'authorization_details']) {
      if (payload[claim] !== undefined) throw new OAuthError('invalid_grant', `the ID-JAG carries ${claim}, which this gateway cannot honour`);
    }
    const resource = boundResource(payload['resource'], request.resource);
    const asserted = typeof payload['scope'] === 'string' ? splitScopes(payload['scope']) : undefined;
    // MCP §7.2.1: requested ∩ asserted; and only what the backend (and the client) may have.
    const scopes = narrowScopes(request.scopes, resource.scopes, asserted, ctx.configuredClients.get(client.clientId)?.scopes);
    // MCP §7.4.2: the jti is single use, on every replica (the Store), until the ID-JAG expires.
    const remember = Math.max(1, payload.exp! - now + CLOCK_SKEW_SECONDS);
    if (!(await ctx.store.setIfAbsent(keys.usedAssertion(issuer.issuer, payload.jti!), 1, remember))) {
      throw new OAuthError('invalid_grant', 'the ID-JAG was already used (jti)');
    }
    const user = identityOf(payload, issuer);
    const userKey = userKeyOf(user);
    return issueAccessOnly(
      ctx,
      { user, userKey, clientId: client.clientId, scopes, resource: resource.resource },
      { grantType: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertionIssuer: issuer.issuer, address: request.address },
    );
  }

  /** Signature by the issuer's keys with an allowed algorithm; iss, aud = our issuer, exp/iat, required claims. */
  async function verify(assertion: string): Promise<{ payload: JWTPayload; issuer: IdJagIssuerConfig }> {
    let unverifiedIssuer: unknown;
    try {
      unverifiedIssuer = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')).iss;
    } catch {
      throw new OAuthError('invalid_grant', 'the assertion is not a JWT');
    }
    const trusted = typeof unverifiedIssuer === 'string' ? issuers.get(unverifiedIssuer) : undefined;
    if (!trusted) throw new OAuthError('invalid_grant', 'the ID-JAG issuer is not trusted');
    try {
      const { payload } = await jwtVerify(assertion, trusted.keys, {
        issuer: trusted.config.issuer,
        // Draft §3 and MCP §7.6.2: aud is our issuer identifier (RFC 8414 §2).
        audience: [ctx.issuer, `${ctx.issuer}/`],
        algorithms: trusted.config.algorithms,
        requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id'],
        currentDate: new Date(ctx.clock.nowSeconds() * 1000),
        clockTolerance: CLOCK_SKEW_SECONDS,
      });
      return { payload, issuer: trusted.config };
    } catch (error) {
      if (error instanceof OAuthError) throw error;
      throw new OAuthError('invalid_grant', `the ID-JAG is not valid: ${joseReason(error)}`);
    }
  }

  /** MCP §5.1, §7.6.2: the token is for the resource the ID-JAG names, which must be ours. */
  function boundResource(claim: unknown, requested: string | undefined) {
    const named = typeof claim === 'string' ? [claim] : Array.isArray(claim) ? claim.filter((r): r is string => typeof r === 'string') : [];
    if (named.length === 0) throw new OAuthError('invalid_grant', 'the ID-JAG names no resource');
    const ours = named.map((r) => findResource(ctx.resources, r));
    if (ours.some((r) => r === undefined)) throw new OAuthError('invalid_grant', 'the ID-JAG resource is not served by this gateway');
    if (requested !== undefined) {
      const match = ours.find((r) => r!.resource === requested);
      if (!match) throw new OAuthError('invalid_target', 'resource is not one the ID-JAG was issued for');
      return match;
    }
    if (ours.length !== 1) throw new OAuthError('invalid_target', 'the ID-JAG names several resources: send resource');
    return ours[0]!;
  }

  return { trusts: (issuer) => typeof issuer === 'string' && issuers.has(issuer), redeem };
}

/** The person an ID-JAG names, by the issuer's claim mapping (draft §3: iss+sub is unique). */
function identityOf(payload: JWTPayload, issuer: IdJagIssuerConfig): UserIdentity {
  const map = issuer.user;
  const subject = payload[map.subjectClaim];
  if (typeof subject !== 'string' || subject === '') throw new OAuthError('invalid_grant', `the ID-JAG has no ${map.subjectClaim}`);
  const text = (name: string) => (typeof payload[name] === 'string' ? (payload[name] as string) : undefined);
  const list = (name: string) => {
    const value = payload[name];
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : typeof value === 'string' ? [value] : [];
  };
  return {
    issuer: map.issuer ?? issuer.issuer,
    subject,
    objectId: text('oid'),
    tenantId: text('tid'),
    name: text(map.nameClaim),
    email: text(map.emailClaim),
    preferredUsername: text('preferred_username') ?? text(map.emailClaim),
    roles: list(map.rolesClaim),
    groups: list(map.groupsClaim),
  };
}
