/** Time source, injected wherever expiry matters so tests can move time. */
export interface Clock {
  /** Current time in epoch seconds (integer). */
  nowSeconds(): number;
  /** Current time in epoch milliseconds, for sub-second bounds such as cache lifetimes (default: the system's). */
  nowMs?(): number;
}

export const systemClock: Clock = {
  nowSeconds: () => Math.floor(Date.now() / 1000),
  nowMs: () => Date.now(),
};
