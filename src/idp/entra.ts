import * as client from 'openid-client';
import type { EntraIdpConfig } from '../config/schema.ts';
import { type Clock, nowMsOf, systemClock } from '../ports/clock.ts';
import { type UpstreamIdp, UpstreamRefusedError, UpstreamUnavailableError } from '../ports/idp.ts';
import { createOpenIdIdp, insecureAllowed, privateKeyJwtAuth, USER_MUST_ACT, type UpstreamLogger } from './oidc.ts';

export interface EntraIdpOptions {
  /** The gateway's /callback URL, registered on the Entra app. */
  redirectUri: string;
  /** Source of the federated `client_assertion`, replacing the managed identity (tests). */
  getFederatedAssertion?: () => Promise<string>;
  /** Allow an http:// authority host on loopback (a local Entra look-alike in tests). */
  allowInsecureHttp?: boolean;
  logger?: UpstreamLogger;
  /** Dates token expiries (default: the system's). */
  clock?: Clock;
}

const ENTRA_PUBLIC_CLOUD = 'https://login.microsoftonline.com';
const MULTI_TENANT = new Set(['organizations', 'common']);
const OIDC_SCOPES = new Set(['openid', 'profile', 'email', 'offline_access']);
/** Entra reads a scope without a resource prefix as a Microsoft Graph scope. */
const GRAPH = 'https://graph.microsoft.com';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** Renew the managed identity's token this long before it expires. */
const ASSERTION_RENEW_MARGIN_MS = 5 * 60 * 1000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Microsoft Entra ID (v2 endpoints), applying every rule of DESIGN §6. */
export async function createEntraIdp(config: EntraIdpConfig, options: EntraIdpOptions): Promise<UpstreamIdp> {
  const scopes = entraScopes(config.scopes);
  const authorityHost = config.authorityHost.replace(/\/+$/, '');
  const authority = new URL(`${authorityHost}/${config.tenantId}/v2.0`);
  const multiTenant = MULTI_TENANT.has(config.tenantId.toLowerCase());
  const allowedTenants = new Set(config.allowedTenants.map((t) => t.toLowerCase()));
  const clock = options.clock ?? systemClock;
  const clientAuth = await entraClientAuth(config, clock, options.getFederatedAssertion);

  // Multi-tenant: the id_token issuer is per tenant ({authorityHost}/{tid}/v2.0) while discovery says
  // `{authorityHost}/{tenantid}/v2.0`. openid-client validates such an issuer against the token's
  // `tid`, but only for metadata discovered from https://login.microsoftonline.com itself. For another
  // authority host (a national cloud, or a local look-alike in tests) we discover through that origin
  // and send the requests to the configured host.
  let server = authority;
  let fetchFromAuthority: client.CustomFetch | undefined;
  if (multiTenant && authorityHost !== ENTRA_PUBLIC_CLOUD) {
    server = new URL(`${ENTRA_PUBLIC_CLOUD}/${config.tenantId}/v2.0`);
    fetchFromAuthority = (url, init) =>
      fetch(url.startsWith(`${ENTRA_PUBLIC_CLOUD}/`) ? authorityHost + url.slice(ENTRA_PUBLIC_CLOUD.length) : url, init);
  }

  return createOpenIdIdp({
    kind: 'entra',
    server,
    clientId: config.clientId,
    clientAuth,
    redirectUri: options.redirectUri,
    // Never a `resource` parameter: Entra v2 refuses it (AADSTS9010010); the resource is in the scopes.
    scopes,
    allowInsecureHttp: insecureAllowed(authority, options.allowInsecureHttp),
    ...(fetchFromAuthority ? { fetch: fetchFromAuthority } : {}),
    rolesClaim: 'roles',
    groupsClaim: 'groups',
    clock,
    // Refresh with the configured scopes, never the response's `scope`: Entra's is not the request's
    // (for `.default` it lists the expanded permissions plus `.default`, which its own rules then
    // refuse with AADSTS70011; for an API's scopes it leaves out `openid`, and without `openid` the
    // refresh brings no id_token, so the tid checks below would never run again).
    refreshScope: () => scopes.join(' '),
    // Entra: unauthorized_client on a refresh means the app is gone or disabled in the user's tenant.
    userMustActErrors: new Set([...USER_MUST_ACT, 'unauthorized_client']),
    ...(options.logger ? { logger: options.logger } : {}),
    // The user is `oid` + `tid`; the tenant must be the configured one, or on the allow-list.
    checkClaims: (claims) => {
      const tid = typeof claims['tid'] === 'string' ? claims['tid'].toLowerCase() : undefined;
      if (!tid) throw new UpstreamRefusedError('access_denied', 'the id_token has no tid claim');
      if (typeof claims['oid'] !== 'string') throw new UpstreamRefusedError('access_denied', 'the id_token has no oid claim');
      if (UUID.test(config.tenantId) && tid !== config.tenantId.toLowerCase()) {
        throw new UpstreamRefusedError('access_denied', `tenant ${tid} is not the configured tenant`);
      }
      if ((multiTenant || allowedTenants.size > 0) && !allowedTenants.has(tid)) {
        throw new UpstreamRefusedError('access_denied', `tenant ${tid} is not in upstream.entra.allowedTenants`);
      }
    },
  });
}

/**
 * The scopes sent to Entra: the configured ones plus `openid`, `profile` (for `oid`) and
 * `offline_access` (without it no refresh token comes back). Entra issues a token for one resource
 * per request, and `.default` cannot be combined with other scopes of a resource (AADSTS70011).
 */
function entraScopes(configured: string[]): string[] {
  const scopes = [...new Set([...configured, 'openid', 'profile', 'offline_access'])];
  const resourceScopes = scopes.filter((s) => !OIDC_SCOPES.has(s));
  const resources = new Set(resourceScopes.map(resourceOf));
  if (resources.size > 1) {
    throw new Error(
      `upstream.entra.scopes: scopes of more than one resource (${[...resources].join(', ')}); Entra issues a token for one resource per request`,
    );
  }
  const dotDefault = resourceScopes.find((s) => s === '.default' || s.endsWith('/.default'));
  if (dotDefault && resourceScopes.length > 1) {
    throw new Error(`upstream.entra.scopes: ${dotDefault} cannot be combined with other resource scopes`);
  }
  return scopes;
}

function resourceOf(scope: string): string {
  const slash = scope.lastIndexOf('/');
  return slash > 0 ? scope.slice(0, slash).toLowerCase() : GRAPH;
}

async function entraClientAuth(
  config: EntraIdpConfig,
  clock: Clock,
  getFederatedAssertion: (() => Promise<string>) | undefined,
): Promise<client.ClientAuth> {
  if (config.clientSecret) return client.ClientSecretPost(config.clientSecret);
  if (config.certificate) {
    // Entra's certificate credential as MSAL sends it: PS256, `x5t#S256`, `typ: JWT`, audience the
    // token endpoint (for `organizations`, /organizations/oauth2/v2.0/token) (certificate-credentials.md).
    return privateKeyJwtAuth(config.certificate, {
      audience: 'token_endpoint',
      rsaAlgorithm: 'PS256',
    });
  }
  if (!config.managedIdentity && !getFederatedAssertion) {
    throw new Error('upstream.entra.clientSecret: exactly one of clientSecret, certificate or managedIdentity is required');
  }
  const identity = config.managedIdentity;
  const assertion =
    getFederatedAssertion ?? managedIdentityAssertion(identity!.clientId, federatedAudience(config.authorityHost, identity!.audience), clock);
  // A federated credential: the managed identity's token for api://AzureADTokenExchange is the
  // client_assertion (RFC 7521 §4.2), the reference deployment's secretless way. Entra refusing it
  // (invalid_client, AADSTS700211-700213, 7002137: no federated credential matches its issuer,
  // subject or audience) is our configuration's fault: 503 and an error log, never a sign-out.
  return async (_as, clientMetadata, body) => {
    body.set('client_id', clientMetadata.client_id);
    body.set('client_assertion_type', JWT_BEARER);
    body.set('client_assertion', await assertion());
  };
}

/**
 * The audience a managed identity's token must have for Entra's token exchange, per cloud
 * (workload-identity-federation-config-app-trust-managed-identity.md); a configured one wins.
 */
const TOKEN_EXCHANGE_AUDIENCES: Record<string, string> = {
  'login.microsoftonline.com': 'api://AzureADTokenExchange',
  'login.microsoftonline.us': 'api://AzureADTokenExchangeUSGov',
  'login.chinacloudapi.cn': 'api://AzureADTokenExchangeChina',
};

export function federatedAudience(authorityHost: string, configured: string | undefined): string {
  if (configured) return configured;
  const audience = TOKEN_EXCHANGE_AUDIENCES[new URL(authorityHost).hostname.toLowerCase()];
  if (!audience) {
    throw new Error(`upstream.entra.managedIdentity.audience: required for authority host ${authorityHost} (no known token exchange audience)`);
  }
  return audience;
}

function managedIdentityAssertion(clientId: string, audience: string, clock: Clock): () => Promise<string> {
  let credential: { getToken(scope: string): Promise<{ token: string; expiresOnTimestamp: number } | null> } | undefined;
  let cached: { token: string; renewAt: number } | undefined;
  return async () => {
    if (cached && nowMsOf(clock) < cached.renewAt) return cached.token;
    try {
      if (!credential) {
        const { ManagedIdentityCredential } = await import('@azure/identity');
        credential = new ManagedIdentityCredential({ clientId });
      }
      const token = await credential.getToken(`${audience}/.default`);
      if (!token) throw new Error('no token');
      cached = { token: token.token, renewAt: token.expiresOnTimestamp - ASSERTION_RENEW_MARGIN_MS };
      return token.token;
    } catch (error) {
      throw new UpstreamUnavailableError('the managed identity gave no token for the federated credential', {
        cause: error,
      });
    }
  };
}
