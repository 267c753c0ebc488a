import { watch } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { writeFileAtomic } from '../src/files/atomic-write.js';
import { now, type Summary, sleep, summarize } from './stats.js';

/** Raw etcd3 put -> watch event on the same client: the etcd part of the floor. */
export async function etcdPutToWatch(endpoint: string, samples: number): Promise<Summary> {
  const client = new Etcd3({ hosts: endpoint });
  const watcher = await client.watch().key('/floor/k').create();
  const times: number[] = [];
  let pending: ((t: number) => void) | undefined;
  watcher.on('put', () => pending?.(now()));
  for (let i = 0; i < samples; i++) {
    const seen = new Promise<number>((r) => {
      pending = r;
    });
    const start = now();
    await client.put('/floor/k').value(String(i));
    times.push((await seen) - start);
    await sleep(2);
  }
  await watcher.cancel();
  client.close();
  return summarize(times);
}

/** One atomic file write (temp, fsync, rename, folder fsync). */
export async function atomicWrite(dir: string, samples: number): Promise<Summary> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const start = now();
    await writeFileAtomic(join(dir, 'floor.conf'), `[S]\nk = ${i}\n`);
    times.push(now() - start);
  }
  return summarize(times);
}

/** Plain write -> fs.watch event on its folder: the detection part of the floor, with the detector the bench uses. */
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
    await sleep(5);
  }
  watcher.close();
  return summarize(times);
}
