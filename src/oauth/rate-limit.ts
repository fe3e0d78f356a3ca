import type { FastifyRequest } from 'fastify';
import type { Audit } from '../audit/audit.ts';
import { SECURITY_EVENT } from '../audit/events.ts';
import type { Clock } from '../ports/clock.ts';
import type { Store } from '../ports/store.ts';
import { OAuthError } from './errors.ts';
import { keys } from './keys.ts';

/**
 * Fixed-window counters in the Store, so every replica shares them: per client IP, or for the
 * whole gateway (a bound that rotating source addresses cannot get around). Unauthenticated
 * endpoints that write state (DCR creates client records) need a bound (RFC 7591 §5).
 */
export function createRateLimit(
  deps: { store: Store; clock: Clock; audit?: Audit },
  name: string,
  limit: number,
  windowSeconds: number,
  per: 'address' | 'gateway' = 'address',
) {
  return async function check(request: FastifyRequest): Promise<void> {
    if (limit <= 0) return;
    const window = Math.floor(deps.clock.nowSeconds() / windowSeconds);
    const count = await deps.store.increment(keys.rateLimit(name, per === 'address' ? request.ip : '*', window), windowSeconds);
    if (count > limit) {
      // One record per window and address, not per refused request: a flood must not flood the trail.
      if (count === limit + 1) deps.audit?.record({ 'event.name': SECURITY_EVENT.rateLimited, 'gateway.limit': name, 'client.address': request.ip });
      const retryAfter = (window + 1) * windowSeconds - deps.clock.nowSeconds();
      const from = per === 'address' ? 'from this address' : 'to this gateway';
      throw new OAuthError('temporarily_unavailable', `too many ${name} requests ${from}; retry in ${retryAfter} s`, {
        status: 429,
        headers: { 'retry-after': String(retryAfter) },
      });
    }
  };
}
