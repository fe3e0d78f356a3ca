import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider, { type Account, type OidcContext } from 'oidc-provider';
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';
import type { DevIdpConfig, DevUser } from '../config/schema.ts';
import { type Clock, systemClock } from '../ports/clock.ts';
import type { Store } from '../ports/store.ts';
import { createStoreAdapter } from './store-adapter.ts';

/** The gateway: the dev IdP's one static confidential client. */
export interface DevIdpClient {
  clientId: string;
  /** client_secret_post. */
  clientSecret?: string;
  redirectUris: string[];
  /** When given, the client authenticates with private_key_jwt signed by one of these keys instead. */
  jwks?: { keys: JWK[] };
}

export interface DevIdp {
  /** `http://HOST:PORT/{tenantId}/v2.0`, Entra's issuer shape. */
  issuer: string;
  /** `http://HOST:PORT`. */
  origin: string;
  /** From now on the user cannot sign in and every refresh of their grants is refused (invalid_grant). */
  disableUser(login: string): void;
  /** Changes the user's claims from the next token on (`undefined` removes one): a change made upstream. */
  setUserClaims(login: string, claims: Record<string, unknown>): void;
  close(): Promise<void>;
}

export interface DevIdpOptions {
  /** Persist the provider's state here (the gateway's Store) instead of in memory. */
  store?: Store;
  /** The Store's clock, dating the entries kept in it (default: the system's). */
  clock?: Clock;
  env?: Record<string, string | undefined>;
  /** Wraps the HTTP handler (test/support/entra-shaped-idp.ts records requests with it). */
  wrap?: (handler: RequestListener) => RequestListener;
  /** Scopes the client may ask for besides the OIDC ones (an Entra API's scopes, in the look-alike). */
  extraScopes?: string[];
  /** Scope → claims map replacing the default one (the look-alike's: `oid` and names only with `profile`). */
  claims?: Record<string, string[]>;
  /** Claims added at each issuance (the look-alike's `nbf`). */
  issuanceClaims?: () => Record<string, unknown>;
  /** `sub` pairwise per client (as Entra's), from this function of the user's own `sub` and the client id. */
  pairwiseSubject?: (sub: string, clientId: string) => string;
  /** false: a refresh answers with the same refresh token (default: a new one each time). */
  rotateRefreshToken?: boolean;
}

const SCOPES = ['openid', 'profile', 'email', 'offline_access'];
const MAX_FORM_BYTES = 16 * 1024;

/** Starts the embedded OpenID Provider on its own loopback port. Development and tests only. */
export async function startDevIdp(
  config: DevIdpConfig,
  client: DevIdpClient,
  options: DevIdpOptions = {},
): Promise<DevIdp> {
  const env = options.env ?? process.env;
  if (env['NODE_ENV'] === 'production' && !config.allowInProduction) {
    throw new Error(
      'the dev IdP refuses to start with NODE_ENV=production (set upstream.dev.allowInProduction: true to override)',
    );
  }

  const users = config.users.map((user) => toAccount(user, config.tenantId));
  const bySub = new Map(users.map((u) => [u.sub, u]));
  const byLogin = new Map(users.map((u) => [u.user.login, u]));
  const disabled = new Set<string>();
  const scopes = [...new Set([...SCOPES, ...(options.extraScopes ?? [])])];

  let handler: RequestListener = (_req, res) => res.writeHead(503).end();
  const server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const origin = `http://${urlHost(config.host)}:${port}`;
  const mountPath = `/${config.tenantId}/v2.0`;
  const issuer = `${origin}${mountPath}`;

  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const signingKey = { ...(await exportJWK(privateKey)), alg: 'RS256', use: 'sig', kid: randomBytes(8).toString('hex') };

  const provider = new Provider(issuer, {
    // The gateway's Store when given (sessions and refresh tokens survive a restart of `npm start`),
    // else oidc-provider's own in-memory adapter, passed explicitly to silence its dev-only warning.
    adapter: options.store ? createStoreAdapter(options.store, options.clock ?? systemClock) : createMemoryAdapter(),
    jwks: { keys: [signingKey] },
    clients: [
      {
        client_id: client.clientId,
        ...(client.jwks
          ? { token_endpoint_auth_method: 'private_key_jwt', jwks: client.jwks }
          : { client_secret: client.clientSecret, token_endpoint_auth_method: 'client_secret_post' }),
        redirect_uris: client.redirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        scope: scopes.join(' '),
        ...(options.pairwiseSubject ? { subject_type: 'pairwise' } : {}),
      },
    ],
    ...(options.pairwiseSubject
      ? {
          subjectTypes: ['public', 'pairwise'],
          pairwiseIdentifier: async (_ctx: unknown, sub: string, c: { clientId: string }) => options.pairwiseSubject!(sub, c.clientId),
        }
      : {}),
    scopes,
    // Entra-shaped claims. `oid`, `tid`, `roles`, `groups` ride with `openid` so every id_token has them.
    claims: options.claims ?? {
      openid: ['sub', 'oid', 'tid', 'roles', 'groups'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    // Put the scope claims in the id_token (as Entra does), not only behind the userinfo endpoint.
    conformIdTokenClaims: false,
    findAccount: async (_ctx: unknown, sub: string): Promise<Account | undefined> => {
      const account = bySub.get(sub);
      // A disabled user has no account: oidc-provider then refuses their refresh tokens with invalid_grant.
      if (!account || disabled.has(account.user.login)) return undefined;
      return { accountId: sub, claims: () => ({ ...account.claims, ...options.issuanceClaims?.() }) };
    },
    // OAuth 2.1 / DESIGN §5: PKCE (S256, the only method oidc-provider 9 implements) for every request.
    pkce: { required: () => true },
    // A refresh token whenever offline_access was granted to a client allowed the refresh_token grant.
    issueRefreshToken: async (
      _ctx: unknown,
      c: { grantTypeAllowed(type: string): boolean },
      code: { scopes: Set<string> },
    ) => c.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    // Entra rotates refresh tokens on every use.
    rotateRefreshToken: options.rotateRefreshToken ?? true,
    interactions: { url: (_ctx: OidcContext, interaction: { uid: string }) => `${mountPath}/interaction/${interaction.uid}` },
    features: { devInteractions: { enabled: false } },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 600,
      IdToken: 3600,
      RefreshToken: 14 * 86400,
      Interaction: 600,
      Session: 86400,
      Grant: 14 * 86400,
    },
  });

  const callback = provider.callback();
  const base: RequestListener = (req, res) => {
    const url = new URL(req.url ?? '/', origin);
    if (url.pathname !== mountPath && !url.pathname.startsWith(`${mountPath}/`)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const rest = url.pathname.slice(mountPath.length) || '/';
    const interaction = /^\/interaction\/([\w-]+)(\/login)?$/.exec(rest);
    if (interaction) {
      handleInteraction(req, res, interaction[2] === '/login').catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(`sign-in failed: ${error instanceof Error ? error.message : 'unknown error'}`);
      });
      return;
    }
    if (rest === '/auth') promptAsEntra(url);
    // Mount under /{tenant}/v2.0: oidc-provider derives its mount path from originalUrl minus url.
    (req as IncomingMessage & { originalUrl?: string }).originalUrl = url.pathname + url.search;
    req.url = rest + url.search;
    callback(req, res);
  };
  handler = options.wrap ? options.wrap(base) : base;

  async function handleInteraction(req: IncomingMessage, res: ServerResponse, isLogin: boolean): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    const action = `${mountPath}/interaction/${details.uid}/login`;
    if (details.prompt.name === 'consent') {
      // The gateway is this IdP's only client: consent is granted without a page, so the only page
      // a user ever sees is sign-in.
      const accountId = details.session?.accountId;
      if (!accountId) throw new Error('no session');
      const grant =
        (details.grantId ? await provider.Grant.find(details.grantId) : undefined) ??
        new provider.Grant({ accountId, clientId: String(details.params['client_id']) });
      grant.addOIDCScope(String(details.params['scope'] ?? 'openid'));
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    if (details.prompt.name !== 'login') throw new Error(`unexpected prompt ${details.prompt.name}`);
    if (!isLogin || req.method !== 'POST') {
      const hint = typeof details.params['login_hint'] === 'string' ? details.params['login_hint'] : '';
      sendPage(res, 200, signInPage(action, hint));
      return;
    }
    const form = new URLSearchParams(await readBody(req));
    const login = form.get('login') ?? '';
    const account = byLogin.get(login);
    if (!account || !passwordMatches(account.user.password, form.get('password') ?? '') || disabled.has(login)) {
      sendPage(res, 200, signInPage(action, login, 'Wrong login or password.'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
  }

  return {
    issuer,
    origin,
    disableUser(login) {
      if (!byLogin.has(login)) throw new Error(`no dev user ${login}`);
      disabled.add(login);
    },
    setUserClaims(login, claims) {
      const account = byLogin.get(login);
      if (!account) throw new Error(`no dev user ${login}`);
      for (const [name, value] of Object.entries(claims)) {
        if (value === undefined) delete account.claims[name];
        else account.claims[name] = value;
      }
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        if (!server.listening) return resolve();
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

interface DevAccount {
  user: DevUser;
  sub: string;
  claims: Record<string, unknown>;
}

function toAccount(user: DevUser, tenantId: string): DevAccount {
  const oid = user.oid ?? stableUuid(`${tenantId}:${user.login}`);
  // Entra's `sub` is per application and differs from `oid`; keep that property so nobody confuses them.
  const sub = createHash('sha256').update(`sub:${tenantId}:${user.login}`).digest('base64url').slice(0, 43);
  return {
    user,
    sub,
    claims: {
      sub,
      oid,
      tid: tenantId,
      name: user.name,
      preferred_username: user.login,
      ...(user.email ? { email: user.email, email_verified: true } : {}),
      // Entra omits roles/groups when there are none.
      ...(user.roles.length ? { roles: user.roles } : {}),
      ...(user.groups.length ? { groups: user.groups } : {}),
    },
  };
}

/** A name-based (v5-shaped) UUID, so a user without a configured oid keeps the same one across restarts. */
function stableUuid(name: string): string {
  const b = createHash('sha1').update(name).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x50;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Entra semantics over oidc-provider's. oidc-provider follows OIDC Core §11 strictly: it drops
 * `offline_access` from an authorization request unless `prompt` includes `consent`; Entra honours it
 * without. So a request for offline_access gets `consent` added (granted without a page, see
 * handleInteraction), and `select_account`, which oidc-provider does not know, becomes `login`.
 */
function promptAsEntra(url: URL): void {
  const prompts = new Set((url.searchParams.get('prompt') ?? '').split(' ').filter(Boolean));
  if (prompts.delete('select_account')) prompts.add('login');
  const scopes = (url.searchParams.get('scope') ?? '').split(' ');
  if (scopes.includes('offline_access') && !prompts.has('none')) prompts.add('consent');
  if (prompts.size) url.searchParams.set('prompt', [...prompts].join(' '));
}

function passwordMatches(expected: string, given: string): boolean {
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) throw new Error('form too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function sendPage(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    // form-action also governs the redirects after the POST (CSP3): sign-in ends at the gateway's /callback.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'",
  });
  res.end(html);
}

function signInPage(action: string, login: string, error?: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in — dev IdP</title>
<style>body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto}label,input,button{display:block;width:100%;margin:.3rem 0}.error{color:#b00020}</style>
</head><body>
<h1>Sign in</h1>
<p>Development identity provider. Not for production.</p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="${escapeHtml(action)}">
<label for="login">Login</label><input id="login" name="login" autocomplete="username" required value="${escapeHtml(login)}">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</body></html>`;
}

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}
