import { watch } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { writeFileAtomic } from '../src/files/atomic-write.js';
import { now, type Summary, sleep, summarize } from './stats.js';

/**
 * The etcd part of the file -> etcd floor: a put from one client, timed
 * until its reply (`ack`) and until a watcher on another client sees it
 * (`watch`), which is where the file -> etcd figure stops its clock.
 */
export async function etcdPut(endpoint: string, samples: number): Promise<{ ack: Summary; watch: Summary }> {
  const writer = new Etcd3({ hosts: endpoint });
  const reader = new Etcd3({ hosts: endpoint });
  const watcher = await reader.watch().key('/floor/k').create();
  const acks: number[] = [];
  const watches: number[] = [];
  let pending: ((t: number) => void) | undefined;
  watcher.on('put', () => pending?.(now()));
  for (let i = 0; i < samples; i++) {
    const seen = new Promise<number>((r) => {
      pending = r;
    });
    const start = now();
    await writer.put('/floor/k').value(String(i));
    acks.push(now() - start);
    watches.push((await seen) - start);
    await sleep(2); // paced, not back-to-back
  }
  await watcher.cancel();
  writer.close();
  reader.close();
  return { ack: summarize(acks), watch: summarize(watches) };
}

/** One atomic file write (temp, fsync, rename, folder fsync): what durability costs a change to a file. */
export async function atomicWrite(dir: string, samples: number): Promise<Summary> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const start = now();
    await writeFileAtomic(join(dir, 'floor.conf'), `[S]\nk = ${i}\n`);
    times.push(now() - start);
  }
  return summarize(times);
}

/** Plain write -> fs.watch event on its folder: the detection part of the file -> etcd floor. */
export async function fileEventDetection(dir: string, samples: number): Promise<Summary> {
  const file = join(dir, 'detect.conf');
  await writeFile(file, 'x');
  let pending: ((t: number) => void) | undefined;
  const watcher = watch(dir, (_event, name) => {
    if (name === 'detect.conf') pending?.(now());
  });
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const seen = new Promise<number>((r) => {
      pending = r;
    });
    const start = now();
    await writeFile(file, `v${i}`);
    times.push((await seen) - start);
    pending = undefined;
    await sleep(5); // paced, not back-to-back
  }
  watcher.close();
  return summarize(times);
}
