import type { Logger } from '../log.js';
import type { BaseStore } from './base-store.js';
import type { EtcdSide } from './etcd-side.js';
import type { FileSide } from './file-side.js';

/**
 * What the last run sent (to etcd) or wrote (to files) and was killed
 * before recording counts as agreed where that side still holds it (see
 * announcePushes and announceFileWrites). Run before any pass may start, so
 * no pass merges against the stale base. Only the files named by announced
 * writes are read.
 */
export async function settleLastRun(parts: {
  readonly base: BaseStore;
  readonly etcd: EtcdSide;
  readonly files: FileSide;
  readonly logger: Logger;
}): Promise<void> {
  const { base, etcd, files } = parts;
  const fileOf = (key: string) => etcd.fileOf(key);
  const pushed = base.settleAnnounced((key) => etcd.get(key), fileOf);
  let written = 0;
  if (base.hasAnnouncedWrites) {
    const paths = [...new Set([...base.announcedWriteKeys()].map(fileOf))].filter(
      (path): path is string => path !== undefined,
    );
    const snapshots = new Map((await files.read(paths, true)).map((s, i) => [paths[i], s]));
    written = base.settleWritten((key) => {
      const file = fileOf(key);
      const snapshot = file === undefined ? undefined : snapshots.get(file);
      // A file that cannot be read tells nothing: its announced writes are left to the merge.
      return snapshot === undefined || snapshot.kind === 'unreadable' ? null : snapshot.entries.get(key);
    }, fileOf);
  }
  if (pushed + written > 0)
    parts.logger.info({ pushed, written }, 'writes the last run made but did not record are taken as agreed');
}
