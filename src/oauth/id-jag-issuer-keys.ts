import type { JWTVerifyGetKey } from 'jose';
import type { Logger } from 'pino';
import type { IdJagIssuerConfig } from '../config/schema.ts';
import { OAuthError } from './errors.ts';
import { createConfiguredFetch, REMOTE_DOCUMENT_MAX_BYTES, REMOTE_FETCH_TIMEOUT_MS, remoteJwks } from './remote-jwks.ts';
import { createSafeFetch, namesPrivateHost, type SafeFetch, type SafeFetchResult } from './safe-fetch.ts';

const METADATA_NOT_FETCHED = 'the ID-JAG issuer metadata could not be fetched';
const KEYS_NOT_FETCHED = 'the ID-JAG issuer keys could not be fetched';

/**
 * The signing keys of trusted ID-JAG issuers, fetched with the SSRF guard (safe-fetch.ts: bounded
 * in time and size, no redirects, no private addresses). A configured `issuer` (when discovered)
 * and `jwksUri` are https, http and loopback addresses only on loopback in dev (remote-jwks.ts);
 * checked at start. A discovered `jwks_uri` (RFC 8414 §2) is on the issuer's own origin, or https
 * at a public address; anything else is refused and logged.
 */
export function createIdJagIssuerKeys(options: { dev: boolean; logger: Pick<Logger, 'warn'> }) {
  const publicFetch = createSafeFetch({ timeoutMs: REMOTE_FETCH_TIMEOUT_MS, maxBytes: REMOTE_DOCUMENT_MAX_BYTES, allowInsecure: false });
  const configuredFetch = createConfiguredFetch({ dev: options.dev });
  const { logger } = options;

  function remoteKeys(issuer: string, url: URL, fetch: SafeFetch): JWTVerifyGetKey {
    return remoteJwks(url, fetch, { logger, message: KEYS_NOT_FETCHED, fields: { issuer } });
  }

  /** A discovered jwks_uri: the issuer's own origin is fetched as the issuer is; another must be https at a public address. */
  function discoveredKeys(issuer: string, issuerFetch: SafeFetch, jwksUri: string): JWTVerifyGetKey {
    const url = URL.canParse(jwksUri) ? new URL(jwksUri) : undefined;
    let problem: string | undefined;
    if (!url) problem = 'is not a URL';
    else if (url.origin === new URL(issuer).origin) return remoteKeys(issuer, url, issuerFetch);
    else if (url.protocol !== 'https:') problem = "must be https when not on the issuer's origin";
    else if (namesPrivateHost(url)) problem = 'is a private, loopback or link-local address';
    else return remoteKeys(issuer, url, publicFetch);
    logger.warn({ issuer, jwksUri: jwksUri.slice(0, 200), reason: problem }, 'ID-JAG issuer jwks_uri refused');
    throw new OAuthError('temporarily_unavailable', `the ID-JAG issuer's jwks_uri ${problem}`);
  }

  /** RFC 8414 §3, then OpenID discovery; the first document naming exactly this issuer (§3.3) gives jwks_uri. */
  async function discover(issuer: string, issuerFetch: SafeFetch): Promise<JWTVerifyGetKey> {
    const url = new URL(issuer);
    const path = url.pathname === '/' ? '' : url.pathname;
    const reasons: string[] = [];
    for (const wellKnown of [`/.well-known/oauth-authorization-server${path}`, `${path}/.well-known/openid-configuration`]) {
      const at = new URL(wellKnown, url.origin);
      let answer: SafeFetchResult;
      try {
        answer = await issuerFetch(at);
      } catch (error) {
        reasons.push(`${at.pathname}: ${(error as Error).message}`);
        continue;
      }
      if (answer.status !== 200) {
        reasons.push(`${at.pathname}: HTTP ${answer.status}`);
        continue;
      }
      const metadata = jsonObject(answer.body);
      if (metadata?.['issuer'] !== issuer || typeof metadata['jwks_uri'] !== 'string') {
        reasons.push(`${at.pathname}: not this issuer's metadata with a jwks_uri`);
        continue;
      }
      return discoveredKeys(issuer, issuerFetch, metadata['jwks_uri']);
    }
    logger.warn({ issuer, reasons }, METADATA_NOT_FETCHED);
    throw new OAuthError('temporarily_unavailable', METADATA_NOT_FETCHED);
  }

  /** The issuer's keys: its jwksUri, or the jwks_uri of its metadata, discovered on first use (again after a failure). */
  return function keysOf(issuer: IdJagIssuerConfig, index: number): JWTVerifyGetKey {
    const key = `enterpriseAuthorization.issuers[${index}]`;
    if (issuer.jwksUri) return remoteKeys(issuer.issuer, new URL(issuer.jwksUri), configuredFetch(issuer.jwksUri, `${key}.jwksUri`));
    const issuerFetch = configuredFetch(issuer.issuer, `${key}.issuer`);
    let discovered: Promise<JWTVerifyGetKey> | undefined;
    return async (header, token) => {
      discovered ??= discover(issuer.issuer, issuerFetch).catch((error) => {
        discovered = undefined;
        throw error;
      });
      return (await discovered)(header, token);
    };
  };
}

function jsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
