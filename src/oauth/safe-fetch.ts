import { lookup } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { Agent, request } from 'undici';
import { tlsTrustOptions } from '../config/tls.ts';

/**
 * Addresses a server-side fetch must not reach unless explicitly allowed (SSRF guard for
 * Client ID Metadata Documents, draft-ietf-oauth-client-id-metadata-document §6).
 */
const PRIVATE = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 3],
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 96], // unspecified, loopback and IPv4-compatible (::a.b.c.d)
  ['100::', 64], // discard-only
  ['2001::', 32], // Teredo: tunnels to an embedded IPv4 address
  ['2002::', 16], // 6to4: embeds an IPv4 address
  ['64:ff9b::', 96], // NAT64: reaches the embedded IPv4 address
  ['64:ff9b:1::', 48], // local-use NAT64
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10], // deprecated site-local
  ['ff00::', 8],
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv6');
}

/**
 * IPv4-mapped `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2) and IPv4-translated `::ffff:0:a.b.c.d`
 * (RFC 2765 §2.1) addresses reach the embedded IPv4 address: judge that one. The WHATWG URL
 * parser writes any spelling (dotted, hex, uncompressed) in one canonical form first.
 */
const EMBEDDED_IPV4 = /^\[::ffff:(?:0:)?([0-9a-f]{1,4}):([0-9a-f]{1,4})\]$/;

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return PRIVATE.check(address, 'ipv4');
  if (family !== 6 || !URL.canParse(`http://[${address}]`)) return true; // zone ids (fe80::1%eth0) are link-local
  const embedded = EMBEDDED_IPV4.exec(new URL(`http://[${address}]`).hostname);
  if (!embedded) return PRIVATE.check(address, 'ipv6');
  const [high, low] = [Number.parseInt(embedded[1]!, 16), Number.parseInt(embedded[2]!, 16)];
  return PRIVATE.check(`${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`, 'ipv4');
}

/** A URL whose host is, literally, a private address or localhost (names are judged once resolved). */
export function namesPrivateHost(url: URL): boolean {
  const literal = url.hostname.replace(/^\[|\]$/g, '');
  return isIP(literal) ? isPrivateAddress(literal) : literal === 'localhost';
}

class SafeFetchError extends Error {
  override name = 'SafeFetchError';
}

export interface SafeFetchOptions {
  timeoutMs: number;
  maxBytes: number;
  /** Allow http:// and private, loopback and link-local addresses (dev mode only). */
  allowInsecure: boolean;
  /** PEM CA certificates trusted in addition to Node's bundled roots. */
  extraCa?: string;
}

/** A POST with a JSON body (Microsoft Graph actions); GET by default. */
export interface SafeFetchInit {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
}

export interface SafeFetchResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * GET (or POST) a small public document: https only, no private addresses (checked on the resolved
 * address actually connected to, so DNS rebinding cannot slip through), bounded in time and size,
 * no redirects.
 */
export function createSafeFetch(options: SafeFetchOptions) {
  const agent = new Agent({
    connect: {
      timeout: options.timeoutMs,
      ...tlsTrustOptions({ ca: options.extraCa }),
      lookup(hostname, lookupOptions, callback) {
        lookup(hostname, { ...lookupOptions, all: true }, (error, addresses) => {
          if (error) return callback(error, '', 0);
          const usable = options.allowInsecure ? addresses : addresses.filter((a) => !isPrivateAddress(a.address));
          if (usable.length === 0) {
            return callback(new SafeFetchError(`${hostname} resolves only to private addresses`), '', 0);
          }
          if (lookupOptions.all) return callback(null, usable as never, 0);
          callback(null, usable[0]!.address, usable[0]!.family);
        });
      },
    },
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  });

  return async function safeFetch(target: URL, init: SafeFetchInit = {}): Promise<SafeFetchResult> {
    if (target.protocol !== 'https:' && !(options.allowInsecure && target.protocol === 'http:')) {
      throw new SafeFetchError('only https URLs can be fetched');
    }
    if (!options.allowInsecure && namesPrivateHost(target)) {
      throw new SafeFetchError(`${target.hostname} is a private, loopback or link-local address`);
    }
    const signal = AbortSignal.timeout(options.timeoutMs);
    try {
      const response = await request(target, {
        dispatcher: agent,
        method: init.method ?? 'GET',
        headers: { accept: 'application/json', ...init.headers },
        ...(init.body === undefined ? {} : { body: init.body }),
        signal,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of response.body) {
        size += (chunk as Buffer).length;
        if (size > options.maxBytes) {
          response.body.destroy();
          throw new SafeFetchError(`document is larger than ${options.maxBytes} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
      return { status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') };
    } catch (error) {
      if (error instanceof SafeFetchError) throw error;
      if (signal.aborted) throw new SafeFetchError(`no complete answer within ${options.timeoutMs} ms`);
      throw new SafeFetchError(`fetch failed: ${(error as Error).message}`);
    }
  };
}
export type SafeFetch = ReturnType<typeof createSafeFetch>;
