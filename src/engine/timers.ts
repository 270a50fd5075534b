/** Node's timer limit (2^31-1 ms, about 24.8 days): a longer delay fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Resolves after `ms`, or at once when `signal` aborts; long waits are armed in pieces. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (!(ms > 0) || signal?.aborted) return resolve();
    const deadline = Date.now() + ms;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      const left = deadline - Date.now();
      if (left <= 0) return done();
      timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
    };
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
    arm();
  });
}
