import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isPrivateAddress } from './safe-fetch.ts';

describe('isPrivateAddress (CIMD SSRF guard)', () => {
  const cases: [string, boolean][] = [
    ['8.8.8.8', false],
    ['2606:4700:4700::1111', false],
    ['127.0.0.1', true],
    ['10.1.2.3', true],
    ['172.16.0.1', true],
    ['192.168.1.1', true],
    ['169.254.169.254', true],
    ['100.64.0.1', true],
    ['0.0.0.0', true],
    ['224.0.0.1', true],
    ['::1', true],
    ['::', true],
    ['::7f00:1', true],
    ['::ffff:127.0.0.1', true],
    ['::ffff:169.254.169.254', true],
    ['::ffff:7f00:1', true], // IPv4-mapped loopback, hex form
    ['0:0:0:0:0:ffff:a9fe:a9fe', true], // IPv4-mapped link-local, uncompressed
    ['::ffff:8.8.8.8', false],
    ['::ffff:0:127.0.0.1', true], // IPv4-translated (RFC 2765) loopback
    ['::ffff:0:7f00:1', true],
    ['::ffff:0:169.254.169.254', true],
    ['::ffff:0:10.0.0.1', true],
    ['::ffff:0:0:0', true], // translated 0.0.0.0
    ['::ffff:0:8.8.8.8', false],
    ['fe80::1%eth0', true],
    ['64:ff9b::a9fe:a9fe', true],
    ['2002:a9fe:a9fe::1', true],
    ['2001:0:4136:e378::1', true],
    ['fd00::1', true],
    ['fe80::1', true],
    ['fec0::1', true],
    ['ff02::1', true],
    ['not-an-ip', true],
  ];
  for (const [address, expected] of cases) {
    it(`${address} → ${expected ? 'refused' : 'allowed'}`, () => assert.equal(isPrivateAddress(address), expected));
  }
});
