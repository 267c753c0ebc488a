import type { PassStage, SyncOptions } from './sync-options.js';

/** Times the steps of a pass: each call reports the time since the one before (or since the pass began). */
export function stageClock(onStage: SyncOptions['onStage']): (stage: PassStage) => void {
  if (onStage === undefined) return () => undefined;
  let last = performance.now();
  return (stage) => {
    const now = performance.now();
    onStage(stage, (now - last) / 1000);
    last = now;
  };
}
