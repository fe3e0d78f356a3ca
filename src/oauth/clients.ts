import { OAuthClientMetadataSchema } from '@modelcontextprotocol/core';
import type { Logger } from 'pino';
import type { Clock } from '../ports/clock.ts';
import type { ClientRecord } from '../ports/records.ts';
import type { Store } from '../ports/store.ts';
import type { ConfiguredClient } from './configured-clients.ts';
import { OAuthError } from './errors.ts';
import { keys } from './keys.ts';
import { customSchemeProblem, redirectUriProblem } from './redirect-uri.ts';
import type { SafeFetch } from './safe-fetch.ts';

const CIMD_DEFAULT_CACHE_SECONDS = 300;
const CIMD_MAX_CACHE_SECONDS = 86400;
const CIMD_FAILURE_CACHE_SECONDS = 30;
const MAX_REDIRECT_URIS = 20;
/** A client's life is extended this much beyond the need, so an active client is rewritten at most hourly. */
const KEEP_ALIVE_SLACK_SECONDS = 3600;
/**
 * Why a document could not be fetched (DNS, addresses, connect, TLS, timeouts, HTTP status, size)
 * tells an unauthenticated caller about our network: it gets this, the log gets the reason.
 */
const NOT_FETCHED = 'client metadata document could not be fetched';

/** Client lookup: configured clients, DCR clients from the Store, CIMD clients fetched by URL and cached. */
export function createClients(
  deps: { store: Store; clock: Clock; fetchDocument: SafeFetch; logger: Logger },
  options: {
    cimdEnabled: boolean;
    customSchemes: readonly string[];
    /** A DCR client unused this long is forgotten. */
    unusedClientTtlSeconds: number;
    /** The longest a grant issued or refreshed now can live (the refresh token lifetime). */
    grantTtlSeconds: number;
    /** Pre-registered clients (config `clients`); they take precedence over the Store. */
    configured?: ReadonlyMap<string, ConfiguredClient>;
  },
) {
  const { store, clock } = deps;
  for (const scheme of options.customSchemes) {
    const problem = customSchemeProblem(scheme);
    if (problem) throw new Error(`clientRegistration.customSchemes: ${problem}`);
  }

  /** True for client ids that are Client ID Metadata Document URLs (draft-ietf-oauth-client-id-metadata-document). */
  function isMetadataDocumentUrl(clientId: string): boolean {
    return /^https?:\/\//.test(clientId);
  }

  /** CIMD client ids that could be fetched at all; malformed ones are refused, never thrown. */
  function parseMetadataDocumentUrl(clientId: string): URL {
    if (!URL.canParse(clientId)) throw new OAuthError('invalid_client', 'client_id is not a valid URL');
    return new URL(clientId);
  }

  /** Returns the client or throws invalid_client with the precise reason. */
  async function find(clientId: string | undefined): Promise<ClientRecord> {
    if (!clientId) throw new OAuthError('invalid_request', 'client_id is required');
    if (clientId.length > 2048) throw new OAuthError('invalid_client', 'client_id is too long');
    const configured = options.configured?.get(clientId);
    if (configured) return configured.record;
    const cached = await store.get<ClientRecord>(keys.client(clientId));
    if (cached) return cached;
    if (!isMetadataDocumentUrl(clientId)) throw new OAuthError('invalid_client', 'unknown client_id');
    if (!options.cimdEnabled) throw new OAuthError('invalid_client', 'client ID metadata documents are disabled');
    return fetchMetadataDocument(clientId);
  }

  /** Failures are remembered briefly, so a bad document URL cannot make us fetch on every request. */
  async function fetchMetadataDocument(clientId: string): Promise<ClientRecord> {
    const failed = await store.get<string>(keys.failedClient(clientId));
    if (failed) throw new OAuthError('invalid_client', failed);
    try {
      return await fetchAndValidate(clientId);
    } catch (error) {
      if (error instanceof OAuthError && error.code === 'invalid_client') {
        await store.set(keys.failedClient(clientId), error.description, CIMD_FAILURE_CACHE_SECONDS);
      }
      throw error;
    }
  }

  async function fetchAndValidate(clientId: string): Promise<ClientRecord> {
    const url = parseMetadataDocumentUrl(clientId);
    // CIMD §3: the URL has a path, no fragment, no credentials.
    if (url.hash || url.username || url.password || url.pathname === '/') {
      throw new OAuthError('invalid_client', 'client_id URL must have a path and no fragment or credentials');
    }
    let response: Awaited<ReturnType<SafeFetch>>;
    try {
      response = await deps.fetchDocument(url);
    } catch (error) {
      deps.logger.warn({ clientId, reason: (error as Error).message }, NOT_FETCHED);
      throw new OAuthError('invalid_client', NOT_FETCHED);
    }
    if (response.status !== 200) {
      deps.logger.warn({ clientId, reason: `HTTP ${response.status}` }, NOT_FETCHED);
      throw new OAuthError('invalid_client', NOT_FETCHED);
    }
    let document: Record<string, unknown>;
    try {
      document = JSON.parse(response.body) as Record<string, unknown>;
    } catch {
      throw new OAuthError('invalid_client', 'client metadata document is not valid JSON');
    }
    if (typeof document !== 'object' || document === null || Array.isArray(document)) {
      throw new OAuthError('invalid_client', 'client metadata document must be a JSON object');
    }
    if (document['client_id'] !== clientId) {
      throw new OAuthError('invalid_client', 'client metadata document client_id does not equal its URL');
    }
    const method = document['token_endpoint_auth_method'] ?? 'none';
    if (method !== 'none') {
      throw new OAuthError('invalid_client', `token_endpoint_auth_method ${describe(method)} is not supported for metadata documents`);
    }
    const record = buildRecord(clientId, 'cimd', document, 'invalid_client');
    const ttl = cacheSeconds(response.headers['cache-control']);
    if (ttl > 0) await store.set(keys.client(clientId), record, ttl);
    return record;
  }

  /** RFC 7591 §3.1 registration; returns the stored record. */
  async function register(metadata: unknown, clientId: string, clientSecretHash?: string): Promise<ClientRecord> {
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
      throw new OAuthError('invalid_client_metadata', 'registration request must be a JSON object');
    }
    const record = buildRecord(clientId, 'dcr', metadata as Record<string, unknown>, 'invalid_client_metadata');
    if (clientSecretHash) record.clientSecretHash = clientSecretHash;
    record.expiresAt = record.createdAt + options.unusedClientTtlSeconds;
    await store.set(keys.client(clientId), record, options.unusedClientTtlSeconds);
    return record;
  }

  /**
   * A DCR client lives `unusedClientTtlSeconds` past its last use (/authorize, /token), and at
   * least as long as any grant issued to it: a token response (issuedGrant) extends it to the
   * longest a grant issued or refreshed now can live. The record's own expiresAt says how long it
   * is kept, so an extension never shortens it and most uses write nothing.
   */
  async function keepAlive(client: ClientRecord, issuedGrant: boolean): Promise<void> {
    if (client.kind !== 'dcr') return;
    const now = clock.nowSeconds();
    // Registered before clients expired: a grant of any age may exist.
    const coverGrants = issuedGrant || client.expiresAt === undefined;
    const untilAt = now + (coverGrants ? Math.max(options.unusedClientTtlSeconds, options.grantTtlSeconds) : options.unusedClientTtlSeconds);
    if (client.expiresAt !== undefined && client.expiresAt >= untilAt) return;
    const expiresAt = untilAt + KEEP_ALIVE_SLACK_SECONDS;
    await store.set(keys.client(client.clientId), { ...client, expiresAt }, expiresAt - now);
  }

  function buildRecord(
    clientId: string,
    kind: ClientRecord['kind'],
    doc: Record<string, unknown>,
    errorCode: 'invalid_client' | 'invalid_client_metadata',
  ): ClientRecord {
    const redirectUris = doc['redirect_uris'];
    if (!Array.isArray(redirectUris) || redirectUris.length === 0) {
      throw new OAuthError(kind === 'dcr' ? 'invalid_redirect_uri' : errorCode, 'redirect_uris must be a non-empty array');
    }
    if (redirectUris.length > MAX_REDIRECT_URIS) {
      throw new OAuthError(kind === 'dcr' ? 'invalid_redirect_uri' : errorCode, `at most ${MAX_REDIRECT_URIS} redirect_uris`);
    }
    for (const uri of redirectUris) {
      const problem = typeof uri === 'string' ? redirectUriProblem(uri, options.customSchemes) : 'must be a string';
      if (problem) {
        const shown = JSON.stringify(uri) ?? typeof uri;
        const brief = shown.length > 100 ? `${shown.slice(0, 100)}…` : shown;
        throw new OAuthError(kind === 'dcr' ? 'invalid_redirect_uri' : errorCode, `redirect_uri ${brief}: ${problem}`);
      }
    }
    const grantTypes = stringArray(doc, 'grant_types', ['authorization_code', 'refresh_token'], errorCode);
    const unsupportedGrant = grantTypes.find((g) => g !== 'authorization_code' && g !== 'refresh_token');
    if (unsupportedGrant) throw new OAuthError(errorCode, `grant_type ${unsupportedGrant} is not supported`);
    const responseTypes = stringArray(doc, 'response_types', ['code'], errorCode);
    if (responseTypes.some((r) => r !== 'code')) throw new OAuthError(errorCode, 'only response_type code is supported');
    const method = doc['token_endpoint_auth_method'] ?? 'none';
    if (method !== 'none' && method !== 'client_secret_post' && method !== 'client_secret_basic') {
      throw new OAuthError(errorCode, `token_endpoint_auth_method ${describe(method)} is not supported`);
    }
    return {
      clientId,
      kind,
      clientName: optionalString(doc, 'client_name', errorCode),
      clientUri: optionalUrl(doc, 'client_uri', errorCode),
      logoUri: optionalUrl(doc, 'logo_uri', errorCode),
      redirectUris: redirectUris as string[],
      grantTypes,
      responseTypes,
      tokenEndpointAuthMethod: method,
      scope: optionalString(doc, 'scope', errorCode),
      createdAt: clock.nowSeconds(),
    };
  }

  return { find, register, keepAlive, isMetadataDocumentUrl };
}
export type Clients = ReturnType<typeof createClients>;

function stringArray(doc: Record<string, unknown>, field: string, fallback: string[], code: 'invalid_client' | 'invalid_client_metadata'): string[] {
  const value = doc[field];
  if (value === undefined) return fallback;
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw new OAuthError(code, `${field} must be an array of strings`);
  }
  return value as string[];
}

function optionalString(doc: Record<string, unknown>, field: string, code: 'invalid_client' | 'invalid_client_metadata'): string | undefined {
  const value = doc[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.length > 1024) throw new OAuthError(code, `${field} must be a string of at most 1024 characters`);
  return value;
}

/**
 * RFC 7591 §2: client_uri and logo_uri are URLs. Checked with the MCP SDK's own field schemas:
 * its client parses our registration response with OAuthClientInformationFullSchema, so a value
 * it would refuse there is refused here, at registration, naming the field.
 */
function optionalUrl(doc: Record<string, unknown>, field: 'client_uri' | 'logo_uri', code: 'invalid_client' | 'invalid_client_metadata'): string | undefined {
  const value = optionalString(doc, field, code);
  const issue = value === undefined ? undefined : OAuthClientMetadataSchema.shape[field].safeParse(value).error?.issues[0];
  if (issue) throw new OAuthError(code, `${field}: ${issue.message}`);
  return value;
}

/** A value from an untrusted document, safe to put in a message (never throws). */
function describe(value: unknown): string {
  return typeof value === 'string' ? value : (JSON.stringify(value) ?? typeof value).slice(0, 100);
}

/** RFC 9111 §5.2.2: honour max-age and no-store, capped; default when absent. */
function cacheSeconds(header: string | string[] | undefined): number {
  const value = Array.isArray(header) ? header.join(',') : (header ?? '');
  if (/\b(no-store|no-cache)\b/i.test(value)) return 0;
  const maxAge = /\bmax-age=(\d+)/i.exec(value);
  if (!maxAge) return CIMD_DEFAULT_CACHE_SECONDS;
  return Math.min(Number(maxAge[1]), CIMD_MAX_CACHE_SECONDS);
}
