import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { waitFor } from '../test/harness/wait.js';
import { loadEtcd, loadedFile } from './bulk.js';
import { startDaemon } from './daemon.js';
import { now, round, within } from './stats.js';
import { tempDirs } from './temp.js';

const FILES = 10;
const KEYS_PER_FILE = 1000;

export interface CatchUp {
  readonly keys: number;
  readonly files: number;
  /** From the spawn call until every file shows every new value. */
  readonly everyFileRightMs: number;
  /** From the spawn call until the daemon logged 'in sync; following both sides'. */
  readonly inSyncMs: number;
  /** Per file, from the spawn call until it showed every new value. */
  readonly perFileMs: number[];
  /** What the restarted daemon logged until in sync with every file right. */
  readonly logBytes: number;
}

/** Lines of `text` carrying the new values' marker (loadEtcd's `value` argument). */
const countNew = (text: string): number => (text.match(/^key\d+ = new /gm) ?? []).length;

/**
 * Resolves with the time each file first showed all its new values. Each
 * file is read when fs.watch reports it (the daemon replaces it by a rename
 * in its folder), so the bench stays off the CPU the daemon is using.
 */
function whenRight(confDir: string): { times: Promise<number[]>; close(): void } {
  const times: number[] = [];
  let right = 0;
  let done: (t: number[]) => void = () => {};
  const promise = new Promise<number[]>((r) => {
    done = r;
  });
  const check = (f: number) => {
    if (times[f] !== undefined) return;
    readFile(join(confDir, loadedFile(f)), 'utf8').then(
      (text) => {
        if (times[f] !== undefined || countNew(text) !== KEYS_PER_FILE) return;
        times[f] = now();
        if (++right === FILES) done(times);
      },
      () => {},
    );
  };
  const watchers: FSWatcher[] = [];
  for (let f = 0; f < FILES; f++) {
    const name = loadedFile(f);
    const base = name.slice(dirname(name).length + 1);
    watchers.push(
      watch(join(confDir, dirname(name)), (_event, changed) => {
        if (changed === base) check(f);
      }),
    );
  }
  return {
    times: promise,
    close: () => {
      for (const w of watchers) w.close();
    },
  };
}

/**
 * Cold catch-up: a daemon mirrors 10 files x 1,000 keys and is stopped;
 * every key then changes in etcd; a new daemon on the same conf dir and
 * state dir is timed from its spawn call until every file is right.
 */
export async function coldCatchUp(main: string, endpoint: string): Promise<CatchUp> {
  const prefix = '/catch-up/';
  const { confDir, stateDir } = await tempDirs('catch-up');
  await loadEtcd(endpoint, prefix, FILES, KEYS_PER_FILE);
  const first = await startDaemon({ main, endpoint, confDir, stateDir, prefix });
  await waitFor(
    async () => {
      const texts = await Promise.all(
        Array.from({ length: FILES }, (_, f) => readFile(join(confDir, loadedFile(f)), 'utf8')),
      );
      return texts.every((t) => (t.match(/^key\d+ = value /gm) ?? []).length === KEYS_PER_FILE);
    },
    { message: `the first daemon did not mirror ${FILES} files of ${KEYS_PER_FILE} keys` },
  );
  await first.stop();

  await loadEtcd(endpoint, prefix, FILES, KEYS_PER_FILE, 'new');
  const right = whenRight(confDir);
  const daemon = await startDaemon({ main, endpoint, confDir, stateDir, prefix });
  try {
    const times = await within(right.times, 30_000, 'the restarted daemon catching up');
    const perFileMs = times.map((t) => round(t - daemon.spawnedAt, 0));
    return {
      keys: FILES * KEYS_PER_FILE,
      files: FILES,
      everyFileRightMs: Math.max(...perFileMs),
      inSyncMs: round(daemon.inSyncAt - daemon.spawnedAt, 0),
      perFileMs,
      logBytes: daemon.logBytes(),
    };
  } finally {
    right.close();
    await daemon.stop();
  }
}
