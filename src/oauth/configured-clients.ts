import { createLocalJWKSet, type JWTVerifyGetKey } from 'jose';
import type { Logger } from 'pino';
import type { ConfiguredClientConfig } from '../config/schema.ts';
import type { Clock } from '../ports/clock.ts';
import type { ClientRecord } from '../ports/records.ts';
import { redirectUriProblem } from './redirect-uri.ts';
import { createConfiguredFetch, remoteJwks } from './remote-jwks.ts';
import { sha256 } from './secrets.ts';

/** A pre-registered confidential client: its record, and the keys of a private_key_jwt client. */
export interface ConfiguredClient {
  record: ClientRecord;
  /** private_key_jwt (RFC 7523 §2.2): verifies the client's assertions. */
  keys?: JWTVerifyGetKey;
  /** The most this client may get; undefined = the resource's scopes. */
  scopes?: readonly string[];
  /** Its own roles, when it calls as a workload (client_credentials). */
  roles: readonly string[];
  /** An Entra app (managed identity, service principal) whose app-only token is its client_assertion. */
  entraApp?: { tenantId: string; appId: string };
}

const KEYS_NOT_FETCHED = "the client's keys could not be fetched";

/**
 * Builds the configured clients once, at start: a bad redirect URI, JWK Set or jwksUri fails the
 * start. A jwksUri is fetched with the SSRF guard (remote-jwks.ts: https, http on loopback only in dev).
 */
export function createConfiguredClients(
  configs: readonly ConfiguredClientConfig[],
  options: { clock: Clock; customSchemes: readonly string[]; dev: boolean; logger: Pick<Logger, 'warn'> },
): ReadonlyMap<string, ConfiguredClient> {
  const clients = new Map<string, ConfiguredClient>();
  const configuredFetch = createConfiguredFetch({ dev: options.dev });
  configs.forEach((config, i) => {
    for (const uri of config.redirectUris) {
      const problem = redirectUriProblem(uri, options.customSchemes);
      if (problem) throw new Error(`clients[${i}].redirectUris: ${uri}: ${problem}`);
    }
    let keys: JWTVerifyGetKey | undefined;
    try {
      if (config.jwks) keys = createLocalJWKSet(config.jwks as Parameters<typeof createLocalJWKSet>[0]);
    } catch (error) {
      throw new Error(`clients[${i}].jwks: not a JWK Set (${(error as Error).message})`, { cause: error });
    }
    if (config.jwksUri) {
      const fetch = configuredFetch(config.jwksUri, `clients[${i}].jwksUri`);
      keys = remoteJwks(new URL(config.jwksUri), fetch, { logger: options.logger, message: KEYS_NOT_FETCHED, fields: { clientId: config.clientId } });
    }
    const record: ClientRecord = {
      clientId: config.clientId,
      kind: 'config',
      clientName: config.name,
      redirectUris: config.redirectUris,
      grantTypes: config.grantTypes,
      responseTypes: config.grantTypes.includes('authorization_code') ? ['code'] : [],
      tokenEndpointAuthMethod: config.secret ? 'client_secret_basic' : 'private_key_jwt',
      ...(config.secret ? { clientSecretHash: sha256(config.secret) } : {}),
      scope: config.scopes?.join(' '),
      createdAt: options.clock.nowSeconds(),
    };
    clients.set(config.clientId, { record, keys, scopes: config.scopes, roles: config.roles, ...(config.entraApp ? { entraApp: config.entraApp } : {}) });
  });
  return clients;
}
