import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A self-signed certificate for localhost and 127.0.0.1, made with the openssl CLI. */
export function selfSignedCertificate(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-tls-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A private CA and a server certificate it signed for `names` (DNS names; IP addresses as
 * `IP:…`), made with the openssl CLI: what an internal service's certificate looks like.
 */
export function privateCaCertificate(names: string[]): { ca: string; key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-ca-'));
  const file = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  try {
    execFileSync('openssl', [
      'req', '-x509', ...ec, '-days', '2', '-subj', '/CN=mcpgw test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
      '-keyout', file('ca-key.pem'), '-out', file('ca.pem'),
    ], { stdio: 'ignore' });
    execFileSync('openssl', ['req', ...ec, '-subj', `/CN=${names[0]}`, '-keyout', file('key.pem'), '-out', file('req.pem')], { stdio: 'ignore' });
    const san = names.map((name) => (name.startsWith('IP:') ? name : `DNS:${name}`)).join(',');
    writeFileSync(file('ext.cnf'), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
    execFileSync('openssl', [
      'x509', '-req', '-in', file('req.pem'), '-CA', file('ca.pem'), '-CAkey', file('ca-key.pem'), '-CAcreateserial',
      '-days', '2', '-extfile', file('ext.cnf'), '-out', file('cert.pem'),
    ], { stdio: 'ignore' });
    return { ca: readFileSync(file('ca.pem'), 'utf8'), key: readFileSync(file('key.pem'), 'utf8'), cert: readFileSync(file('cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
