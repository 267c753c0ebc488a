export interface WaitForOptions {
  /** ms; default 10 000 */
  timeout?: number;
  /** ms between probes; default 20 */
  interval?: number;
  message?: string;
}

/**
 * Polls `probe` until it returns a truthy value, which is returned. A throwing probe means "not yet";
 * the last error is attached to the timeout error so a failing test says why the condition never held.
 */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  opts: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const { timeout = 10_000, interval = 20, message = 'condition not met' } = opts;
  const deadline = Date.now() + timeout;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error ? lastError.message : lastError;
      const suffix = lastError === undefined ? '' : ` (last error: ${cause})`;
      throw new Error(`waitFor timed out after ${timeout} ms: ${message}${suffix}`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}
