import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { waitFor } from '../test/harness/wait.js';
import { loadEtcd, loadedFile } from './bulk.js';
import { startDaemon } from './daemon.js';
import { cpuMs, statusMb } from './proc.js';
import { round, sleep } from './stats.js';
import { tempDirs } from './temp.js';

export interface Memory {
  readonly keys: number;
  readonly files: number;
  /** VmRSS after SETTLE_MS idle past the initial sync: steady by then. */
  readonly rssMb: number;
  /** VmRSS every 5 s of that wait: V8's memory reducer gives back the initial sync's transients after 20-30 s. */
  readonly rssSeriesMb: readonly number[];
  readonly justSyncedMb: number;
  /** VmHWM: the most it ever held, the initial sync included. */
  readonly peakMb: number;
  readonly initialSyncMs: number;
  /** CPU ms per second over the idle wait: what settling after start-up (and any timer) costs. */
  readonly settlingCpuMsPerS: number;
}

/** Idle time before the steady figure: V8's memory reducer gives back the initial sync's transients by then (measured: 20-30 s). */
const SETTLE_MS = 45_000;
const SAMPLE_MS = 5_000;

/** RSS of a `link-etcd sync` process mirroring `files` x `keysPerFile` keys, loaded into etcd first. */
export async function rss(args: {
  main: string;
  endpoint: string;
  prefix: string;
  files: number;
  keysPerFile: number;
}): Promise<Memory> {
  const { files, keysPerFile } = args;
  await loadEtcd(args.endpoint, args.prefix, files, keysPerFile);
  const { confDir, stateDir } = await tempDirs('rss');
  const daemon = await startDaemon({ ...args, confDir, stateDir });
  try {
    // A figure for a daemon that mirrored nothing would be worthless: wait until it did the work.
    await waitFor(
      async () => {
        const written = (await readdir(confDir, { recursive: true })).filter((n) => n.endsWith('.conf'));
        const last = await readFile(join(confDir, loadedFile(files - 1)), 'utf8');
        return written.length === files && (last.match(/^key\d+ = /gm) ?? []).length === keysPerFile;
      },
      { message: `the daemon did not mirror ${files} files of ${keysPerFile} keys` },
    );
    const justSyncedMb = await statusMb(daemon.pid, 'VmRSS');
    const cpuBefore = await cpuMs(daemon.pid);
    const rssSeriesMb: number[] = [];
    for (let waited = 0; waited < SETTLE_MS; waited += SAMPLE_MS) {
      await sleep(SAMPLE_MS);
      rssSeriesMb.push(await statusMb(daemon.pid, 'VmRSS'));
    }
    // Nothing changes meanwhile: any CPU used is the initial sync's trailing work, GC or a timer.
    const settlingCpuMsPerS = round(((await cpuMs(daemon.pid)) - cpuBefore) / (SETTLE_MS / 1000));
    return {
      keys: files * keysPerFile,
      files,
      rssMb: rssSeriesMb.at(-1) ?? Number.NaN,
      rssSeriesMb,
      justSyncedMb,
      peakMb: await statusMb(daemon.pid, 'VmHWM'),
      initialSyncMs: Math.round(daemon.inSyncAt - daemon.spawnedAt),
      settlingCpuMsPerS,
    };
  } finally {
    await daemon.stop();
  }
}
