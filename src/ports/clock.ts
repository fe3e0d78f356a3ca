/** Time source, injected wherever expiry matters so tests can move time. */
export interface Clock {
  /** Current time in epoch seconds (integer). */
  nowSeconds(): number;
}

export const systemClock: Clock = {
  nowSeconds: () => Math.floor(Date.now() / 1000),
};
