import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthDiscoveryState, OAuthClientProvider as V2OAuthClientProvider } from '@modelcontextprotocol/client';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import { type BrowserPage, createHeadlessBrowser, type HeadlessBrowser, signInAtDevIdp } from './headless-browser.ts';

export interface HeadlessUser {
  login: string;
  password: string;
}

/**
 * The official SDK's OAuthClientProvider, headless: redirectToAuthorization follows the
 * authorize URL over HTTP, approves the consent page and signs in at the dev IdP, then keeps
 * the authorization code the client's redirect_uri would have received.
 */
export class HeadlessOAuthProvider implements OAuthClientProvider {
  readonly browser: HeadlessBrowser;
  redirectedTo?: URL;
  authorizationCode?: string;
  /** Every page seen during the last authorization (consent page HTML included). */
  pages: BrowserPage[] = [];
  private info?: OAuthClientInformationMixed;
  private saved?: OAuthTokens;
  private verifier = '';

  private readonly user: HeadlessUser;
  private readonly options: { redirectUrl?: string; clientMetadataUrl?: string; decision?: 'allow' | 'deny'; browser?: HeadlessBrowser };

  constructor(user: HeadlessUser, options: HeadlessOAuthProvider['options'] = {}) {
    this.user = user;
    this.options = options;
    this.browser = options.browser ?? createHeadlessBrowser();
  }

  get redirectUrl(): string {
    return this.options.redirectUrl ?? 'http://127.0.0.1:53682/callback';
  }

  get clientMetadataUrl(): string | undefined {
    return this.options.clientMetadataUrl;
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: 'Headless Test Client',
      redirect_uris: [this.redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  clientInformation() {
    return this.info;
  }
  saveClientInformation(info: OAuthClientInformationMixed) {
    this.info = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens: OAuthTokens) {
    this.saved = tokens;
  }
  saveCodeVerifier(verifier: string) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }

  async redirectToAuthorization(authorizationUrl: URL): Promise<void> {
    this.pages = [];
    const stopAt = (location: URL) => location.href.startsWith(this.redirectUrl);
    let page = await this.browser.get(authorizationUrl, { stopAt });
    for (let step = 0; step < 6 && !page.stoppedAt; step++) {
      this.pages.push(page);
      if (page.body.includes('name="decision"')) {
        page = await this.browser.submitForm(page, 'action="/consent"', { decision: this.options.decision ?? 'allow' }, { stopAt });
      } else if (page.body.includes('name="password"')) {
        page = await signInAtDevIdp(this.browser, page, this.user.login, this.user.password, { stopAt });
      } else {
        throw new Error(`headless sign-in stuck at ${page.url} (HTTP ${page.status}): ${page.body.slice(0, 300)}`);
      }
    }
    if (!page.stoppedAt) throw new Error('headless sign-in did not return to the client');
    this.redirectedTo = page.stoppedAt;
    this.authorizationCode = page.stoppedAt.searchParams.get('code') ?? undefined;
  }
}

/**
 * The same headless sign-in for the v2 client (`@modelcontextprotocol/client`). Its provider
 * interface keeps what the v1 one has, plus the discovery state kept across the redirect, so the
 * client can check that the callback came from the authorization server it started with
 * (SEP-2352); finish with `finishAuth(provider.redirectedTo!.searchParams)` so `iss` is checked too
 * (RFC 9207).
 */
export class HeadlessV2OAuthProvider extends HeadlessOAuthProvider implements V2OAuthClientProvider {
  private discovery?: OAuthDiscoveryState;
  saveDiscoveryState(state: OAuthDiscoveryState) {
    this.discovery = state;
  }
  discoveryState() {
    return this.discovery;
  }
}
