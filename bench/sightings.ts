import { now, within } from './stats.js';

/**
 * When each numbered value was first seen by one observer (a watcher, a
 * file), and a way to await a value: back-to-back runs send the next
 * change the moment the previous one has been seen, without polling.
 */
export class Sightings {
  readonly #at = new Map<number, number>();
  readonly #waiting = new Map<number, Array<() => void>>();

  constructor(readonly name: string) {}

  /** Records `value` as seen at `at`; a later sighting of the same value is an echo and is ignored. */
  see(value: number, at = now()): void {
    if (this.#at.has(value)) return;
    this.#at.set(value, at);
    for (const wake of this.#waiting.get(value) ?? []) wake();
    this.#waiting.delete(value);
  }

  at(value: number): number | undefined {
    return this.#at.get(value);
  }

  /** Resolves once `value` has been seen; rejects after `timeoutMs`, naming what was missed. */
  seen(value: number, timeoutMs = 10_000): Promise<void> {
    if (this.#at.has(value)) return Promise.resolve();
    const waiting = this.#waiting.get(value) ?? [];
    this.#waiting.set(value, waiting);
    return within(
      new Promise<void>((resolve) => waiting.push(resolve)),
      timeoutMs,
      `${this.name} showing ${value}`,
    );
  }
}

/**
 * Latency of each sent value until `observer` saw it. A value overwritten
 * before it could show (only possible when paced) is not a sample: the
 * summary's n says how many were.
 */
export function latencies(sent: readonly number[], observer: Sightings): number[] {
  const out: number[] = [];
  sent.forEach((t, i) => {
    const seen = observer.at(i);
    if (seen !== undefined) out.push(seen - t);
  });
  return out;
}

/** Per value, how much later `slow` saw it than `fast`: what one tool adds over the other, change by change. */
export function added(fast: Sightings, slow: Sightings, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const a = fast.at(i);
    const b = slow.at(i);
    if (a !== undefined && b !== undefined) out.push(b - a);
  }
  return out;
}

/**
 * Calls `send(i)` every `intervalMs` on a fixed schedule (a slow send does
 * not push the later ones back) and returns when each was actually sent:
 * latency is timed from there, so timer lag in the bench is not counted
 * against the daemon.
 */
export async function paced(
  samples: number,
  intervalMs: number,
  send: (i: number) => unknown,
): Promise<number[]> {
  const start = now();
  const sent: number[] = [];
  for (let i = 0; i < samples; i++) {
    const wait = start + i * intervalMs - now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    sent.push(now());
    await send(i);
  }
  return sent;
}

/** Where a propagation run happens: etcd, the daemon's conf dir and prefix, and how many samples. */
export interface RunArgs {
  readonly endpoint: string;
  readonly confDir: string;
  readonly prefix: string;
  readonly samples: number;
}

/** A paced run: also the daemon whose CPU time is measured, and the pace. */
export interface PacedArgs extends RunArgs {
  readonly daemonPid: number;
  readonly intervalMs: number;
}
