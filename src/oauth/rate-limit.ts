import type { FastifyRequest } from 'fastify';
import type { Clock } from '../ports/clock.ts';
import type { Store } from '../ports/store.ts';
import { OAuthError } from './errors.ts';
import { keys } from './keys.ts';

/**
 * Fixed-window counters per client IP in the Store, so every replica shares them. Unauthenticated
 * endpoints that write state (DCR creates durable records) need a bound (RFC 7591 §5).
 */
export function createRateLimit(deps: { store: Store; clock: Clock }, name: string, limit: number, windowSeconds: number) {
  return async function check(request: FastifyRequest): Promise<void> {
    if (limit <= 0) return;
    const window = Math.floor(deps.clock.nowSeconds() / windowSeconds);
    const count = await deps.store.increment(keys.rateLimit(name, request.ip, window), windowSeconds);
    if (count > limit) {
      const retryAfter = (window + 1) * windowSeconds - deps.clock.nowSeconds();
      throw new OAuthError('temporarily_unavailable', `too many ${name} requests from this address; retry in ${retryAfter} s`, {
        status: 429,
        headers: { 'retry-after': String(retryAfter) },
      });
    }
  };
}
