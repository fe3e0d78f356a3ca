/**
 * A tiny browser over fetch for headless sign-in in tests: a cookie jar, manual redirects (at most
 * 20 hops), and HTML form submission parsed with regular expressions (enough for our own pages and
 * oidc-provider's).
 */

export interface BrowserPage {
  /** URL of the last response. */
  url: string;
  status: number;
  headers: Headers;
  body: string;
  /** Set when a `stopAt` predicate matched a redirect: where it pointed (not requested). */
  stoppedAt?: URL;
}

export interface RequestOptions {
  /** Stop before following a redirect whose Location matches (e.g. the MCP client's redirect_uri). */
  stopAt?: (location: URL) => boolean;
}

export interface HeadlessBrowser {
  get(url: string | URL, options?: RequestOptions): Promise<BrowserPage>;
  /** POSTs a urlencoded form (with an Origin header, as a browser sends), then follows redirects. */
  post(url: string | URL, fields: Record<string, string>, options?: RequestOptions): Promise<BrowserPage>;
  /**
   * Submits the first `<form>` of the page (or the first whose tag or content contains `formHint`):
   * its hidden and valued inputs, overridden by `fields`.
   */
  submitForm(
    page: BrowserPage,
    formHint: string | undefined,
    fields: Record<string, string>,
    options?: RequestOptions,
  ): Promise<BrowserPage>;
  /** Follows redirects from `url` until a Location matches; resolves with that Location. */
  followUntil(url: string | URL, predicate: (location: URL) => boolean): Promise<URL>;
  /** The Cookie header this browser would send to `url`. */
  cookieHeader(url: string | URL): string;
}

const MAX_REDIRECTS = 20;

interface Cookie {
  name: string;
  value: string;
  hostname: string;
  path: string;
  /** Epoch ms; undefined for a session cookie. */
  expiresAt?: number;
}

export function createHeadlessBrowser(): HeadlessBrowser {
  // Like a browser: cookies are per host name (not port), matched by path. Secure and __Host-
  // cookies are kept and sent over http too, as browsers do for localhost (a secure context).
  const jar = new Map<string, Cookie>();

  function store(url: URL, setCookies: string[]): void {
    for (const header of setCookies) {
      const [pair = '', ...attributes] = header.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const cookie: Cookie = {
        name: pair.slice(0, eq).trim(),
        value: pair.slice(eq + 1).trim(),
        hostname: url.hostname,
        path: defaultPath(url),
      };
      let maxAge: number | undefined;
      for (const attribute of attributes) {
        const [rawKey = '', ...rest] = attribute.split('=');
        const key = rawKey.trim().toLowerCase();
        const value = rest.join('=').trim();
        if (key === 'path' && value.startsWith('/')) cookie.path = value;
        else if (key === 'max-age' && /^-?\d+$/.test(value)) maxAge = Number(value);
        else if (key === 'expires' && !Number.isNaN(Date.parse(value))) cookie.expiresAt = Date.parse(value);
      }
      // RFC 6265 §5.2.2: Max-Age wins over Expires; zero or negative deletes the cookie.
      if (maxAge !== undefined) cookie.expiresAt = maxAge <= 0 ? 0 : Date.now() + maxAge * 1000;
      const key = `${cookie.hostname}|${cookie.path}|${cookie.name}`;
      if (cookie.expiresAt !== undefined && cookie.expiresAt <= Date.now()) jar.delete(key);
      else jar.set(key, cookie);
    }
  }

  function cookieHeader(target: string | URL): string {
    const url = new URL(target);
    const now = Date.now();
    const pairs: string[] = [];
    for (const [key, cookie] of jar) {
      if (cookie.expiresAt !== undefined && cookie.expiresAt <= now) {
        jar.delete(key);
        continue;
      }
      if (cookie.hostname === url.hostname && pathMatches(url.pathname, cookie.path)) {
        pairs.push(`${cookie.name}=${cookie.value}`);
      }
    }
    return pairs.join('; ');
  }

  async function request(
    start: URL,
    init: { method: string; body?: string; contentType?: string; origin?: string },
    options: RequestOptions = {},
  ): Promise<BrowserPage> {
    let url = start;
    let { method, body, contentType } = init;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const headers: Record<string, string> = { accept: 'text/html,application/json;q=0.9,*/*;q=0.8' };
      const cookie = cookieHeader(url);
      if (cookie) headers['cookie'] = cookie;
      if (body !== undefined && contentType) headers['content-type'] = contentType;
      if (method === 'POST' && init.origin) headers['origin'] = init.origin;
      const response = await fetch(url, { method, body, headers, redirect: 'manual' });
      store(url, response.headers.getSetCookie());
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel();
        const next = new URL(location, url);
        if (options.stopAt?.(next)) {
          return { url: url.href, status: response.status, headers: response.headers, body: '', stoppedAt: next };
        }
        // 307/308 repeat the request; 301/302/303 become a GET without body (as browsers do).
        if (response.status !== 307 && response.status !== 308) {
          method = 'GET';
          body = undefined;
          contentType = undefined;
        }
        url = next;
        continue;
      }
      return { url: url.href, status: response.status, headers: response.headers, body: await response.text() };
    }
    throw new Error(`more than ${MAX_REDIRECTS} redirects from ${start.href}`);
  }

  const browser: HeadlessBrowser = {
    get: (url, options) => request(new URL(url), { method: 'GET' }, options),

    post: (url, fields, options) => {
      const target = new URL(url);
      return request(
        target,
        {
          method: 'POST',
          body: new URLSearchParams(fields).toString(),
          contentType: 'application/x-www-form-urlencoded',
          origin: target.origin,
        },
        options,
      );
    },

    async submitForm(page, formHint, fields, options) {
      const form = findForm(page.body, formHint);
      if (!form) throw new Error(`no <form>${formHint ? ` matching "${formHint}"` : ''} at ${page.url}: ${page.body.slice(0, 300)}`);
      const action = new URL(form.action || page.url, page.url);
      const values = new URLSearchParams({ ...form.fields, ...fields });
      if (form.method === 'GET') {
        action.search = values.toString();
        return request(action, { method: 'GET' }, options);
      }
      return request(
        action,
        {
          method: 'POST',
          body: values.toString(),
          contentType: 'application/x-www-form-urlencoded',
          origin: new URL(page.url).origin,
        },
        options,
      );
    },

    async followUntil(url, predicate) {
      const page = await request(new URL(url), { method: 'GET' }, { stopAt: predicate });
      if (!page.stoppedAt) {
        throw new Error(`no redirect matched; ended at ${page.url} (${page.status}): ${page.body.slice(0, 300)}`);
      }
      return page.stoppedAt;
    },

    cookieHeader,
  };
  return browser;
}

/** Submits the dev IdP's sign-in form (fields `login` and `password`, oidc-provider's names). */
export function signInAtDevIdp(
  browser: HeadlessBrowser,
  page: BrowserPage,
  login: string,
  password: string,
  options?: RequestOptions,
): Promise<BrowserPage> {
  return browser.submitForm(page, 'name="password"', { login, password }, options);
}

interface ParsedForm {
  action: string;
  method: 'GET' | 'POST';
  fields: Record<string, string>;
}

function findForm(html: string, hint: string | undefined): ParsedForm | undefined {
  for (const match of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const [whole, tag = '', content = ''] = match;
    if (hint && !whole.includes(hint)) continue;
    const attributes = parseAttributes(tag);
    const fields: Record<string, string> = {};
    for (const input of content.matchAll(/<input\b([^>]*)>/gi)) {
      const a = parseAttributes(input[1] ?? '');
      const type = (a['type'] ?? 'text').toLowerCase();
      const name = a['name'];
      if (!name || ['submit', 'button', 'image', 'reset', 'file'].includes(type)) continue;
      if ((type === 'checkbox' || type === 'radio') && !('checked' in a)) continue;
      fields[name] = a['value'] ?? (type === 'checkbox' ? 'on' : '');
    }
    return {
      action: attributes['action'] ?? '',
      method: (attributes['method'] ?? 'get').toUpperCase() === 'POST' ? 'POST' : 'GET',
      fields,
    };
  }
  return undefined;
}

function parseAttributes(tag: string): Record<string, string> {
  const attributes: Record<string, string> = {};
  for (const m of tag.matchAll(/([^\s=/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g)) {
    const name = (m[1] ?? '').toLowerCase();
    attributes[name] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attributes;
}

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, e: string) => {
    const lower = e.toLowerCase();
    if (lower.startsWith('#x')) return String.fromCodePoint(Number.parseInt(lower.slice(2), 16));
    if (lower.startsWith('#')) return String.fromCodePoint(Number.parseInt(lower.slice(1), 10));
    return ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[lower] ?? e;
  });
}

/** RFC 6265 §5.1.4 default-path. */
function defaultPath(url: URL): string {
  const path = url.pathname;
  if (!path.startsWith('/') || path.lastIndexOf('/') === 0) return '/';
  return path.slice(0, path.lastIndexOf('/'));
}

/** RFC 6265 §5.1.4 path-match. */
function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}
