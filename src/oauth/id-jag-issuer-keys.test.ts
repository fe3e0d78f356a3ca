import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { IdJagIssuerConfig } from '../config/schema.ts';
import { createIdJagIssuerKeys } from './id-jag-issuer-keys.ts';

describe('ID-JAG issuer URLs are checked at start: https, http only on loopback in dev mode', () => {
  const logger = { warn: () => {} };
  const cases: [string, boolean, Partial<IdJagIssuerConfig>, string | undefined][] = [
    ['https issuer', false, { issuer: 'https://idp.example.com' }, undefined],
    ['https jwksUri', false, { issuer: 'http://idp.example.com', jwksUri: 'https://idp.example.com/keys' }, undefined],
    ['loopback http issuer in dev mode', true, { issuer: 'http://127.0.0.1:8443' }, undefined],
    ['loopback http issuer outside dev mode', false, { issuer: 'http://127.0.0.1:8443' }, 'enterpriseAuthorization.issuers[0].issuer'],
    ['http issuer on a non-loopback host in dev mode', true, { issuer: 'http://idp.example.com' }, 'enterpriseAuthorization.issuers[0].issuer'],
    ['http jwksUri on a non-loopback host', true, { issuer: 'https://idp.example.com', jwksUri: 'http://idp.example.com/keys' }, 'enterpriseAuthorization.issuers[0].jwksUri'],
  ];
  for (const [name, dev, issuer, refusedKey] of cases) {
    it(`${name} → ${refusedKey ? 'refused' : 'accepted'}`, () => {
      const keysOf = createIdJagIssuerKeys({ dev, logger });
      const build = () => keysOf(issuer as IdJagIssuerConfig, 0);
      if (refusedKey) assert.throws(build, { message: `${refusedKey}: must be https (http only on loopback, in dev mode)` });
      else assert.equal(typeof build(), 'function');
    });
  }
});
