import type { UpstreamConfig } from '../config/schema.ts';
import type { Clock } from '../ports/clock.ts';
import type { UpstreamIdp } from '../ports/idp.ts';
import { createEntraIdp } from './entra.ts';
import { createOidcIdp, type UpstreamLogger } from './oidc.ts';

export interface UpstreamIdpOptions {
  /** The gateway's /callback URL. */
  redirectUri: string;
  /** Required for `dev`: the started dev IdP's issuer and the gateway's client registered there. */
  devIdp?: { issuer: string; clientId: string; clientSecret: string };
  /** Entra only: replaces the managed identity as the source of the federated client_assertion. */
  getFederatedAssertion?: () => Promise<string>;
  /** Allow http:// issuers on loopback (always so for the dev IdP). */
  allowInsecureHttp?: boolean;
  /** Where the adapter logs what the IdP answered when it refused or failed. */
  logger?: UpstreamLogger;
  /** Dates token expiries (default: the system's). */
  clock?: Clock;
}

/** The adapter for the one configured upstream. The dev IdP itself is started by the caller. */
export function createUpstreamIdp(upstream: UpstreamConfig, options: UpstreamIdpOptions): Promise<UpstreamIdp> {
  const { redirectUri, allowInsecureHttp, logger, clock } = options;
  if (upstream.entra) {
    return createEntraIdp(upstream.entra, {
      redirectUri,
      allowInsecureHttp,
      getFederatedAssertion: options.getFederatedAssertion,
      logger,
      clock,
    });
  }
  if (upstream.oidc) return createOidcIdp(upstream.oidc, { redirectUri, allowInsecureHttp, logger, clock });
  if (!options.devIdp) throw new Error('upstream.dev: the dev IdP must be started before its adapter is created');
  return createOidcIdp(
    {
      issuer: options.devIdp.issuer,
      clientId: options.devIdp.clientId,
      clientSecret: options.devIdp.clientSecret,
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      rolesClaim: 'roles',
      groupsClaim: 'groups',
    },
    { redirectUri, kind: 'dev', allowInsecureHttp: true, logger, clock },
  );
}
