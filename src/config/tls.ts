import { type ConnectionOptions, rootCertificates } from 'node:tls';
import type { TlsTrustConfig } from './schema.ts';

/**
 * `tls.connect` options for a configured `tls: { ca, servername }`: the CA is trusted in addition
 * to the system CAs (Node's `ca` option replaces them otherwise), certificate checks stay on.
 */
export function tlsTrustOptions(tls: TlsTrustConfig): ConnectionOptions {
  return { ...(tls.ca ? { ca: [...rootCertificates, tls.ca] } : {}), ...(tls.servername ? { servername: tls.servername } : {}) };
}
