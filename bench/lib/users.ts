import type { UserIdentity } from '../../src/ports/idp.ts';

/** The user whose grants the benchmarks mint directly (no sign-in). */
export const BENCH_USER: UserIdentity = {
  issuer: 'https://idp.bench/tenant/v2.0',
  subject: 'bench-sub',
  objectId: '33333333-3333-4333-8333-333333333333',
  tenantId: '00000000-0000-4000-8000-000000000001',
  name: 'Bench User',
  email: 'bench@example.com',
  preferredUsername: 'bench@example.com',
  // The reader role of the dev sample policy (src/dev.ts), which benchmark 1's policy rows apply.
  roles: ['Snippets.Read'],
  groups: ['g-bench'],
};

/** The dev IdP's users in the benchmark gateways (benchmark 5 signs in as alice). */
export const DEV_USERS = [{ login: 'alice', password: 'alice-password', name: 'Alice Admin', email: 'alice@example.com' }];
