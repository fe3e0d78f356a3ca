import { createRemoteJWKSet, customFetch, type JWTVerifyGetKey } from 'jose';
import type { Logger } from 'pino';
import { isLoopbackHost } from '../config/schema.ts';
import { OAuthError } from './errors.ts';
import { createSafeFetch, type SafeFetch, type SafeFetchResult } from './safe-fetch.ts';

export const REMOTE_FETCH_TIMEOUT_MS = 5000;
/** Metadata and JWK Sets (with x5c chains) are small; a bigger answer is refused. */
export const REMOTE_DOCUMENT_MAX_BYTES = 128 * 1024;

/** The guarded fetch for an operator-configured URL, judged by its config key. */
export type ConfiguredFetch = (url: string, key: string) => SafeFetch;

/**
 * Fetches for URLs from the operator's config, with the SSRF guard (safe-fetch.ts: bounded in
 * time and size, no redirects, no private addresses): https, or http on a loopback host in dev
 * mode only, which alone may reach loopback and private addresses (as for the upstream issuer,
 * src/idp/oidc.ts). Checked at start: a bad URL fails the start with a line naming its key.
 */
export function createConfiguredFetch(options: { dev: boolean }): ConfiguredFetch {
  const limits = { timeoutMs: REMOTE_FETCH_TIMEOUT_MS, maxBytes: REMOTE_DOCUMENT_MAX_BYTES };
  const publicFetch = createSafeFetch({ ...limits, allowInsecure: false });
  const loopbackFetch = createSafeFetch({ ...limits, allowInsecure: true });
  return (url, key) => {
    const parsed = new URL(url);
    const loopback = options.dev && isLoopbackHost(parsed.hostname);
    if (parsed.protocol !== 'https:' && !(loopback && parsed.protocol === 'http:')) {
      throw new Error(`${key}: must be https (http only on loopback, in dev mode)`);
    }
    return loopback ? loopbackFetch : publicFetch;
  };
}

/** How a failed fetch of a JWK Set is told: `message` logged (with `fields`, the URL and the reason) and answered. */
export interface KeysNotFetched {
  logger: Pick<Logger, 'warn'>;
  message: string;
  fields?: Record<string, unknown>;
}

/**
 * The JWK Set at `url`, cached by jose (refetched on an unknown kid), each fetch through `fetch`;
 * a failed fetch is logged with its reason and throws temporarily_unavailable with `message` alone
 * (the reason is for the log, not the caller).
 */
export function remoteJwks(url: URL, fetch: SafeFetch, notFetched: KeysNotFetched): JWTVerifyGetKey {
  return createRemoteJWKSet(url, {
    timeoutDuration: REMOTE_FETCH_TIMEOUT_MS,
    [customFetch]: async (href: string) => {
      let answer: SafeFetchResult;
      try {
        answer = await fetch(new URL(href));
      } catch (error) {
        notFetched.logger.warn({ ...notFetched.fields, jwksUri: href, reason: (error as Error).message }, notFetched.message);
        throw new OAuthError('temporarily_unavailable', notFetched.message);
      }
      // jose refuses anything but 200 with a JSON body.
      return new Response(answer.status === 200 ? answer.body : null, { status: answer.status });
    },
  });
}
