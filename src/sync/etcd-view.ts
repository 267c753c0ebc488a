import type { StateEntry } from '../middleware/watch.js';

/**
 * etcd as the engine sees it: the watch's live state (no copy: a daemon
 * mirroring 100,000 keys would hold them twice), with the engine's own
 * writes laid over it until the watch has delivered them. Without the
 * overlay a pass running between our write and its event would take the old
 * value for a change made in etcd.
 */
export class EtcdView {
  private state: ReadonlyMap<string, StateEntry> = new Map();
  /** The revision up to which the watch state holds every change. */
  private watched = 0;
  private readonly own = new Map<
    string,
    { readonly value: string | undefined; readonly modRevision: number }
  >();

  /** A new watch state (the first batch of a subscription), complete up to `revision`. */
  attach(state: ReadonlyMap<string, StateEntry>, revision: number): void {
    this.state = state;
    this.caughtUp(revision);
  }

  /**
   * The watch has delivered everything up to `revision`: our writes at or
   * below it are in the state now (or were overtaken by later changes,
   * foreign deletes included), so the state is the truth for them again.
   */
  caughtUp(revision: number): void {
    this.watched = Math.max(this.watched, revision);
    for (const [key, mine] of this.own) if (mine.modRevision <= this.watched) this.own.delete(key);
  }

  /** The revision up to which the watch state is complete. */
  get revision(): number {
    return this.watched;
  }

  /**
   * Forgets our own writes and the revision reached: after etcd's history
   * went back, revisions above the new ones belong to a history that is gone.
   */
  reset(): void {
    this.own.clear();
    this.watched = 0;
  }

  get(key: string): StateEntry | undefined {
    const mine = this.own.get(key);
    if (mine === undefined) return this.state.get(key);
    return mine.value === undefined ? undefined : { value: mine.value, modRevision: mine.modRevision };
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** Records a write of ours (value undefined: a delete) at `revision`, unless the watch is already past it. */
  wrote(key: string, value: string | undefined, revision: number): void {
    if (revision > this.watched) this.own.set(key, { value, modRevision: revision });
  }
}
