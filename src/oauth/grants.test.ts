import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { UserIdentity } from '../ports/idp.ts';
import { userKeyOf } from './grants.ts';

describe('userKeyOf', () => {
  const tid = '72f988bf-86f1-41af-91ab-2d7cd011db47';
  const base: UserIdentity = { issuer: '', subject: 'sub-1', objectId: 'oid-1', tenantId: tid, roles: [], groups: [] };
  const cases: [string, UserIdentity, string][] = [
    ['Entra v2 issuer of that tenant', { ...base, issuer: `https://login.microsoftonline.com/${tid}/v2.0` }, `${tid}|oid-1`],
    ['another IdP emitting tid/oid claims', { ...base, issuer: 'https://idp.example.com' }, 'https://idp.example.com|sub-1'],
    ['Entra issuer of another tenant', { ...base, issuer: 'https://login.microsoftonline.com/other/v2.0' }, 'https://login.microsoftonline.com/other/v2.0|sub-1'],
    ['no oid', { ...base, objectId: undefined, issuer: `https://login.microsoftonline.com/${tid}/v2.0` }, `https://login.microsoftonline.com/${tid}/v2.0|sub-1`],
  ];
  for (const [name, user, expected] of cases) it(name, () => assert.equal(userKeyOf(user), expected));
});
