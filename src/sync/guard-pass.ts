import type { BaseStore } from './base-store.js';
import type { EtcdSide } from './etcd-side.js';
import type { FileSide } from './file-side.js';
import { deletes, type GuardSettings, guard, type Loss, lossesAcross } from './guard.js';
import type { Side } from './merge.js';
import { losses, type Merged, type Plan, type PlanInput } from './plan.js';

const NO_LOSS: Loss = { keys: 0, files: 0 };

export interface GuardPassOptions extends GuardSettings {
  readonly full: boolean;
  readonly confDirEmpty: boolean;
  readonly holding: ReadonlySet<Side>;
  /** Where a partial pass asks what the whole base lost. */
  readonly whole: { readonly files: FileSide; readonly base: BaseStore; readonly etcd: EtcdSide };
}

/**
 * The guard step of a pass (guard.ts decides; this gathers its counts). A
 * full pass sees every file, so it counts losses from its own input. A pass
 * over a few files cannot tell one removed file from the first of many, nor
 * an emptied conf dir (an unmounted volume) from a deleted file: only when
 * it deletes anything does it ask the whole base (a scan and a stat a file).
 */
export async function guardPass(merged: Merged, input: PlanInput, options: GuardPassOptions): Promise<Plan> {
  if (!options.full && (options.allowMassDelete || !deletes(merged))) return { ...merged, blocked: [] };
  const counts = !options.full
    ? await wholeLosses(options.whole)
    : {
        confDirEmpty: options.confDirEmpty,
        total: input.base.size,
        // Counting walks the whole base: not worth it when nothing would be held anyway.
        lost: options.allowMassDelete
          ? { file: NO_LOSS, etcd: NO_LOSS }
          : { file: losses(input, 'file'), etcd: losses(input, 'etcd') },
      };
  const guarded = guard(merged, {
    ...counts,
    allowMassDelete: options.allowMassDelete,
    maxDeleteShare: options.maxDeleteShare,
    holding: options.holding,
  });
  return { ...merged, ...guarded };
}

/** What each side has lost against the whole base, and whether the conf dir is empty. */
async function wholeLosses(whole: GuardPassOptions['whole']) {
  const confDirEmpty = (await whole.files.scan()).length === 0;
  const views = await whole.files.views(whole.base.files());
  const lost = lossesAcross(
    whole.base.byFile(),
    (file) => views.get(file) ?? 'unread',
    (key) => whole.etcd.has(key),
  );
  return { confDirEmpty, total: whole.base.size, lost };
}
