import type { StateEntry } from '../middleware/watch.js';

/**
 * etcd as the engine sees it: the watch's live state (no copy: a daemon
 * mirroring 100,000 keys would hold them twice), with the engine's own
 * writes laid over it until the watch catches up with them. Without the
 * overlay a pass running between our write and its event would take the old
 * value for a change made in etcd.
 */
export class EtcdView {
  private state: ReadonlyMap<string, StateEntry> = new Map();
  private readonly own = new Map<
    string,
    { readonly value: string | undefined; readonly modRevision: number }
  >();

  attach(state: ReadonlyMap<string, StateEntry>): void {
    this.state = state;
  }

  get(key: string): StateEntry | undefined {
    const live = this.state.get(key);
    const mine = this.own.get(key);
    if (mine === undefined) return live;
    // The watch has delivered our write (or something newer): it is the truth again.
    const caughtUp =
      mine.value === undefined
        ? live === undefined || live.modRevision > mine.modRevision
        : (live?.modRevision ?? 0) >= mine.modRevision;
    if (caughtUp) {
      this.own.delete(key);
      return live;
    }
    return mine.value === undefined ? undefined : { value: mine.value, modRevision: mine.modRevision };
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** Records a write of ours (value undefined: a delete) at `revision`. */
  wrote(key: string, value: string | undefined, revision: number): void {
    this.own.set(key, { value, modRevision: revision });
  }
}
