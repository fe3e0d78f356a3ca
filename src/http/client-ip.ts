import type { IncomingMessage } from 'node:http';
import proxyAddr from '@fastify/proxy-addr';

/**
 * The client's address for a request, as fastify's `request.ip` gives it on its own routes, for the
 * raw routes that skip fastify (the MCP endpoints): config `trustProxy` false, the socket's peer;
 * true, the first X-Forwarded-For address (every hop trusted); a list of proxy addresses/CIDRs, the
 * nearest X-Forwarded-For address not in it (proxies trusted only from the socket on). Same library
 * and semantics as fastify (its lib/request.js getTrustProxyFn).
 */
export function clientIpOf(trustProxy: boolean | string[] | undefined): (req: IncomingMessage) => string {
  if (!trustProxy) return (req) => req.socket.remoteAddress ?? '';
  const trust = trustProxy === true ? () => true : proxyAddr.compile(trustProxy);
  return (req) => proxyAddr(req, trust) ?? '';
}
