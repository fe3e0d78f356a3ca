import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../ports/clock.ts';
import { type DownstreamToken, type UpstreamIdp, UpstreamRefusedError, type UpstreamTokens, UpstreamUnavailableError } from '../ports/idp.ts';
import type { GrantRecord, SealedSecret } from '../ports/records.ts';
import type { Store } from '../ports/store.ts';
import { type ConsentLink, consentLink } from './downstream-consent.ts';
import { OAuthError } from './errors.ts';
import { keys } from './keys.ts';
import type { Sealer, Signer } from './secrets.ts';

/** A cached downstream token is not handed out closer than this to its expiry… */
const REUSE_MARGIN_SECONDS = 300;
/** …nor past this share of its life (short-lived tokens). */
const REUSE_SHARE = 0.5;
/** What a client declared at its last `initialize` is remembered this long (as a session binding is). */
const CLIENT_CAPABILITIES_TTL_SECONDS = 24 * 3600;
const CONSENT_POLL_MS = 500;

/** One downstream token of a backend (config `backends[].downstreamTokens[]`). */
export interface DownstreamTokenSpec {
  via: 'refresh' | 'on-behalf-of';
  /** Scopes of one resource. */
  scopes: readonly string[];
}

/**
 * The user's upstream grant can no longer give this token until the user acts: Entra asked for
 * consent to `scope` (AADSTS65001: invalid_grant + suberror consent_required, or
 * consent_required) or for an interaction (interaction_required: MFA, a conditional access policy).
 * `link` is the gateway page where the user does it (src/oauth/downstream-consent.ts).
 */
export class DownstreamConsentError extends OAuthError {
  readonly scope: string;
  readonly interaction: 'consent_required' | 'interaction_required';
  readonly link: ConsentLink;
  /** The grant's sealed upstream sign-in that was refused (a later one may have the consent). */
  readonly refusedUpstream: string;
  constructor(interaction: 'consent_required' | 'interaction_required', scope: string, link: ConsentLink, refusedUpstream: string, cause: unknown) {
    const what =
      interaction === 'consent_required'
        ? `the user has not consented to ${scope} for this gateway; the user (or an administrator) must consent to it`
        : `the identity provider requires the user to sign in interactively (e.g. multi-factor authentication) for ${scope}`;
    // RFC 8693 §2.2.2 / RFC 6749 §5.2: the grant (the user's upstream grant) cannot give it.
    super('invalid_grant', `${what} (${interaction}); open ${link.url} to do it`, { cause });
    this.scope = scope;
    this.interaction = interaction;
    this.link = link;
    this.refusedUpstream = refusedUpstream;
  }
}

/**
 * Tokens minted from a user's stored upstream (Entra) grant for the resources backends need,
 * cached sealed in the Store per (user, scopes) until shortly before they expire. Every use
 * checks that the gateway grant it comes from still exists, so a grant revoked at /account ends
 * its exchanges on every replica at once (the Store is shared; nothing is cached in memory).
 */
export function createDownstreamTokens(deps: { store: Store; clock: Clock; sealer: Sealer; idp: UpstreamIdp; signer: Signer; issuer: string }) {
  const { store, clock, sealer, idp } = deps;
  if (!idp.downstreamToken) return undefined;
  const mint = idp.downstreamToken.bind(idp);

  /**
   * The token for `spec` on behalf of the user of grant `grantId`. Throws OAuthError; a grant
   * that ended is `grantEnded` (RFC 8693 §2.2.2: an exchange's unacceptable subject token is invalid_request).
   */
  async function tokenFor(
    grantId: string,
    spec: DownstreamTokenSpec,
    options: { grantEnded: 'invalid_grant' | 'invalid_request' } = { grantEnded: 'invalid_grant' },
  ): Promise<DownstreamToken> {
    const grant = await store.get<GrantRecord>(keys.grant(grantId));
    const now = clock.nowSeconds();
    if (!grant || grant.expiresAt <= now) throw new OAuthError(options.grantEnded, 'the user\'s grant has expired or was revoked');
    const cacheKey = keys.downstreamToken(grant.userKey, spec.scopes);
    const cached = await store.get<SealedSecret>(cacheKey);
    const opened = cached && sealer.open(cached);
    if (opened) {
      const token = JSON.parse(opened) as DownstreamToken & { reuseUntil: number };
      if (token.reuseUntil > now) return { accessToken: token.accessToken, expiresAt: token.expiresAt, ...(token.scope ? { scope: token.scope } : {}) };
    }
    const upstream = grant.upstream && sealer.open(grant.upstream);
    if (!upstream) throw new OAuthError('invalid_grant', 'the user\'s grant holds no upstream sign-in to mint tokens from (sign in through the identity provider)');
    let token: DownstreamToken;
    try {
      token = await mint(JSON.parse(upstream) as UpstreamTokens, spec);
    } catch (error) {
      const scope = spec.scopes.join(' ');
      const claims = error instanceof UpstreamRefusedError ? error.details?.claims : undefined;
      throw asOAuthError(error, scope, () => consentLink(deps, grantId, scope, claims), grant.upstream!.sealed);
    }
    const life = token.expiresAt - now;
    const reuseUntil = now + Math.min(life - REUSE_MARGIN_SECONDS, Math.floor(life * REUSE_SHARE));
    if (reuseUntil > now) await store.set(cacheKey, sealer.seal(JSON.stringify({ ...token, reuseUntil })), reuseUntil - now);
    return token;
  }

  /**
   * MCP 2025-11-25 lifecycle §Initialization: the client's capabilities come once, in `initialize`;
   * whether it takes URL-mode elicitations (client/elicitation §Capabilities) is kept per grant
   * (one client, one user) for the calls that follow.
   */
  async function rememberUrlElicitation(grantId: string, supported: boolean): Promise<void> {
    await store.set(keys.clientCapabilities(grantId), { elicitationUrl: supported }, CLIENT_CAPABILITIES_TTL_SECONDS);
  }
  async function takesUrlElicitation(grantId: string): Promise<boolean> {
    return (await store.get<{ elicitationUrl: boolean }>(keys.clientCapabilities(grantId)))?.elicitationUrl === true;
  }

  /**
   * Waits (at most `timeoutMs`) until the grant holds another upstream sign-in than the one
   * `refused` names: the user finished the consent page (downstream-consent.ts) on any replica
   * (or a refresh renewed it). True when it does.
   */
  async function consentCompleted(grantId: string, refused: DownstreamConsentError, timeoutMs: number): Promise<boolean> {
    for (let waited = 0; ; waited += CONSENT_POLL_MS) {
      const now = (await store.get<GrantRecord>(keys.grant(grantId)))?.upstream?.sealed;
      if (now === undefined) return false;
      if (now !== refused.refusedUpstream) return true;
      if (waited >= timeoutMs) return false;
      await sleep(CONSENT_POLL_MS);
    }
  }

  return { tokenFor, rememberUrlElicitation, takesUrlElicitation, consentCompleted };
}
export type DownstreamTokens = NonNullable<ReturnType<typeof createDownstreamTokens>>;

/** What the upstream said, as the one OAuth error the caller answers with. */
function asOAuthError(error: unknown, scope: string, link: () => ConsentLink, refusedUpstream: string): unknown {
  if (error instanceof UpstreamRefusedError) {
    const code = error.upstreamError;
    if (code === 'consent_required' || (code === 'invalid_grant' && error.details?.suberror === 'consent_required')) {
      return new DownstreamConsentError('consent_required', scope, link(), refusedUpstream, error);
    }
    if (code === 'interaction_required') return new DownstreamConsentError('interaction_required', scope, link(), refusedUpstream, error);
    return new OAuthError('invalid_grant', `the identity provider refused a token for ${scope} (${code}): the user must sign in again`, { cause: error });
  }
  if (error instanceof UpstreamUnavailableError) {
    return new OAuthError('temporarily_unavailable', `the identity provider gave no token for ${scope}; try again later`, { cause: error });
  }
  return error;
}
