/** Time source, injected wherever expiry matters so tests can move time. */
export interface Clock {
  /** Current time in epoch seconds (integer). */
  nowSeconds(): number;
  /** Current time in epoch milliseconds, for sub-second bounds such as cache lifetimes (default: nowSeconds × 1000). */
  nowMs?(): number;
}

export const systemClock: Clock = {
  nowSeconds: () => Math.floor(Date.now() / 1000),
  nowMs: () => Date.now(),
};

/** The clock's time in epoch milliseconds (a clock without `nowMs` has whole seconds only). */
export function nowMsOf(clock: Clock): number {
  return clock.nowMs?.() ?? clock.nowSeconds() * 1000;
}
