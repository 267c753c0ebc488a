import { LinkEtcdError } from '../errors.js';
import type { EtcdMiddleware } from '../middleware/middleware.js';
import type { Cancel, Clock } from './scheduler.js';

/** How often etcd is asked whether its history went back: a one-key read. */
export const PROBE_MS = 2_000;

export interface HistoryEvents {
  /** etcd's revision went back, or its cluster id changed: what happened, and the cluster now. */
  regressed(what: string, clusterId: string): Promise<void>;
  /** etcd refuses to let us read the prefix any more: nothing will make it work by itself. */
  refused(error: LinkEtcdError): void;
}

/**
 * Notices what etcd never tells a watcher: a wipe or a snapshot restore at
 * the same address (the revision goes back; a watch resumed at the old
 * revision + 1 is accepted and stays silent), another cluster behind the
 * same address, or a role that may no longer read the prefix. Every
 * PROBE_MS it reads one key and compares the answer's header with the
 * highest revision the daemon had seen *before it asked*: a write that
 * lands while the probe is in flight cannot pass for a regression.
 */
export class EtcdHistory {
  private highest = 0;
  private clusterId: string | undefined;
  private cancel: Cancel | undefined;
  private busy = false;

  constructor(
    private readonly middleware: () => EtcdMiddleware,
    private readonly prefix: string,
    private readonly clock: Clock,
    private readonly on: HistoryEvents,
  ) {}

  /** Starts probing, for a history that has reached `revision` in cluster `clusterId`. */
  start(clusterId: string, revision: number): void {
    this.reset(clusterId, revision);
    const tick = () => {
      this.cancel = this.clock.schedule(tick, PROBE_MS);
      void this.probe();
    };
    this.cancel?.();
    this.cancel = this.clock.schedule(tick, PROBE_MS);
  }

  /** After a recovery: the history to compare with starts again. */
  reset(clusterId: string, revision: number): void {
    this.clusterId = clusterId;
    this.highest = revision;
  }

  /** A revision the daemon saw (a watch batch, one of its own writes). */
  saw(revision: number): void {
    if (revision > this.highest) this.highest = revision;
  }

  stop(): void {
    this.cancel?.();
    this.cancel = undefined;
  }

  private async probe(): Promise<void> {
    if (this.busy || this.clusterId === undefined) return;
    this.busy = true;
    const before = this.highest;
    try {
      const now = await this.middleware().probe(this.prefix);
      if (now.clusterId !== this.clusterId) {
        await this.on.regressed(
          `etcd's cluster changed from ${this.clusterId} to ${now.clusterId}`,
          now.clusterId,
        );
      } else if (now.revision < before) {
        await this.on.regressed(
          `etcd's revision went back from ${before} to ${now.revision} (wiped, or restored from a snapshot)`,
          now.clusterId,
        );
      }
    } catch (error) {
      // Unreachable is the watch's and readiness's business; a refusal to read is for good.
      if (error instanceof LinkEtcdError && error.code === 'ETCD_AUTH') this.on.refused(error);
    } finally {
      this.busy = false;
    }
  }
}
