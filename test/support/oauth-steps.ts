import { createHash, randomBytes } from 'node:crypto';
import { type BrowserPage, createHeadlessBrowser, type HeadlessBrowser, signInAtDevIdp } from './headless-browser.ts';

/** Plain HTTP steps of the flow, for tests that need to hold each piece (code, verifier, cookies). */

export const CLIENT_REDIRECT = 'http://127.0.0.1:53682/callback';

export function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export async function registerClient(baseUrl: string, metadata: Record<string, unknown> = {}): Promise<string> {
  const response = await fetch(`${baseUrl}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'Step Client', redirect_uris: [CLIENT_REDIRECT], token_endpoint_auth_method: 'none', ...metadata }),
  });
  if (response.status !== 201) throw new Error(`registration failed: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { client_id: string }).client_id;
}

export function authorizeUrl(baseUrl: string, params: Record<string, string | undefined>): URL {
  const url = new URL('/authorize', baseUrl);
  for (const [name, value] of Object.entries(params)) if (value !== undefined) url.searchParams.set(name, value);
  return url;
}

export function defaultAuthorizeParams(baseUrl: string, clientId: string, challenge: string): Record<string, string> {
  return {
    response_type: 'code',
    client_id: clientId,
    redirect_uri: CLIENT_REDIRECT,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: 'client-state-1',
    resource: `${baseUrl}/mcp`,
  };
}

const atClient = (location: URL) => location.href.startsWith(CLIENT_REDIRECT);

/** Walks consent (allow) and the dev sign-in; returns where the client was sent back to. */
export async function approveAndSignIn(browser: HeadlessBrowser, start: URL, user = { login: 'alice', password: 'alice-password' }) {
  let page: BrowserPage = await browser.get(start, { stopAt: atClient });
  const seen: BrowserPage[] = [];
  for (let step = 0; step < 6 && !page.stoppedAt; step++) {
    seen.push(page);
    if (page.body.includes('name="decision"')) page = await browser.submitForm(page, 'action="/consent"', { decision: 'allow' }, { stopAt: atClient });
    else if (page.body.includes('name="password"')) page = await signInAtDevIdp(browser, page, user.login, user.password, { stopAt: atClient });
    else throw new Error(`stuck at ${page.url} ${page.status}: ${page.body.slice(0, 200)}`);
  }
  if (!page.stoppedAt) throw new Error('did not return to the client');
  return { returnedTo: page.stoppedAt, pages: seen };
}

/** Register, authorize, consent, sign in: a fresh code and its verifier. */
export async function obtainCode(
  baseUrl: string,
  options: { clientId?: string; browser?: HeadlessBrowser; user?: { login: string; password: string }; start?: URL } = {},
) {
  const clientId = options.clientId ?? (await registerClient(baseUrl));
  const browser = options.browser ?? createHeadlessBrowser();
  const { verifier, challenge } = pkce();
  const start = options.start ?? authorizeUrl(baseUrl, defaultAuthorizeParams(baseUrl, clientId, challenge));
  if (options.start) start.searchParams.set('code_challenge', challenge);
  const { returnedTo, pages } = await approveAndSignIn(browser, start, options.user);
  const code = returnedTo.searchParams.get('code');
  if (!code) throw new Error(`no code: ${returnedTo.href}`);
  return { clientId, code, verifier, browser, pages, returnedTo };
}

export function postForm(baseUrl: string, path: string, fields: Record<string, string>, headers: Record<string, string> = {}) {
  return fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields),
    redirect: 'manual',
  });
}

export function exchangeCode(baseUrl: string, fields: { code: string; verifier: string; clientId: string; resource?: string }) {
  return postForm(baseUrl, '/token', {
    grant_type: 'authorization_code',
    code: fields.code,
    code_verifier: fields.verifier,
    client_id: fields.clientId,
    redirect_uri: CLIENT_REDIRECT,
    ...(fields.resource ? { resource: fields.resource } : {}),
  });
}

export interface IssuedTokenPair {
  access_token: string;
  refresh_token: string;
}

/** exchangeCode, expecting success: the issued tokens. */
export async function redeemCode(baseUrl: string, fields: Parameters<typeof exchangeCode>[1]): Promise<IssuedTokenPair> {
  const response = await exchangeCode(baseUrl, fields);
  if (response.status !== 200) throw new Error(`token request failed: ${response.status} ${await response.text()}`);
  return (await response.json()) as IssuedTokenPair;
}
