import { readFileSync, watch } from 'node:fs';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { quietCpuMs } from './proc.js';
import { added, latencies, type PacedArgs, paced, type RunArgs, Sightings } from './sightings.js';
import { now, round, type Summary, summarize } from './stats.js';

/**
 * One etcd -> file run: each put timed from when it was sent until a raw
 * etcd3 watcher saw it (the floor: what any etcd-watching tool, confd
 * included, must wait for) and until the daemon's file showed it.
 */
export interface EtcdToFile {
  readonly floor: Summary;
  readonly linkEtcd: Summary;
  /** Per put, file time minus watch time. */
  readonly added: Summary;
  readonly p50OverFloor: number;
  readonly p99OverFloor: number;
}

interface Observed {
  put(i: number): Promise<unknown>;
  readonly sent: number[];
  readonly floor: Sightings;
  readonly file: Sightings;
  close(): Promise<void>;
}

/**
 * Puts to `<prefix><name>/S/k` from one client and watches both ends: the
 * key from a second client (its own connection, so the floor watcher does
 * not share a stream with the writer) and the file through fs.watch on the
 * conf dir, reading it on every event.
 */
async function observe(endpoint: string, confDir: string, prefix: string, name: string): Promise<Observed> {
  const writer = new Etcd3({ hosts: endpoint });
  const reader = new Etcd3({ hosts: endpoint });
  const key = `${prefix}${name}/S/k`;
  const floor = new Sightings('the etcd watcher');
  const file = new Sightings(`${name}`);
  const watcher = await reader.watch().key(key).create();
  watcher.on('put', (kv) => floor.see(Number(kv.value.toString())));
  const fsWatcher = watch(confDir, (_event, changed) => {
    if (changed !== name) return;
    // Timed when the read returns: only then does the bench know the file shows the value. Read
    // synchronously: an async readFile is four trips through the thread pool, 0.2-0.4 ms of the
    // observer's own that the etcd watcher (the floor) does not pay.
    let text: string;
    try {
      text = readFileSync(join(confDir, name), 'utf8');
    } catch {
      return; // gone for a moment (a rename in progress): the next event reads it
    }
    const m = /^k = (-?\d+)$/m.exec(text);
    if (m) file.see(Number(m[1]), now());
  });
  // The file exists and both observers work before the first timed put.
  await writer.put(key).value('-1');
  await Promise.all([floor.seen(-1), file.seen(-1)]);
  const sent: number[] = [];
  return {
    sent,
    floor,
    file,
    put: (i) => {
      sent[i] = now();
      return writer.put(key).value(String(i)).exec();
    },
    close: async () => {
      fsWatcher.close();
      await watcher.cancel();
      writer.close();
      reader.close();
    },
  };
}

function summary(o: Observed): EtcdToFile {
  const floor = summarize(latencies(o.sent, o.floor));
  const linkEtcd = summarize(latencies(o.sent, o.file));
  return {
    floor,
    linkEtcd,
    added: summarize(added(o.floor, o.file, o.sent.length)),
    p50OverFloor: round(linkEtcd.p50 - floor.p50),
    p99OverFloor: round(linkEtcd.p99 - floor.p99),
  };
}

/**
 * Paced: a put every `intervalMs` whatever the daemon is doing, as an
 * application updating its config would. `cpuMsPerChange` is the daemon's
 * CPU time over the run divided by the number of puts.
 */
export async function etcdToFilePaced(args: PacedArgs): Promise<EtcdToFile & { cpuMsPerChange: number }> {
  const o = await observe(args.endpoint, args.confDir, args.prefix, 'e2f-paced.conf');
  const cpuBefore = await quietCpuMs(args.daemonPid);
  await paced(args.samples, args.intervalMs, (i) => {
    // Not awaited: the next put goes on schedule even if this reply is slow.
    o.put(i).catch((err: unknown) => console.error(`put ${i} failed:`, err));
  });
  const last = args.samples - 1;
  await Promise.all([o.floor.seen(last), o.file.seen(last)]);
  const cpu = (await quietCpuMs(args.daemonPid)) - cpuBefore;
  await o.close();
  return { ...summary(o), cpuMsPerChange: round(cpu / args.samples, 3) };
}

/** Back-to-back: each put sent the moment both the watcher and the file have shown the previous one. */
export async function etcdToFileBackToBack(args: RunArgs): Promise<EtcdToFile> {
  const o = await observe(args.endpoint, args.confDir, args.prefix, 'e2f-back-to-back.conf');
  for (let i = 0; i < args.samples; i++) {
    await Promise.all([o.put(i), o.floor.seen(i), o.file.seen(i)]);
  }
  await o.close();
  return summary(o);
}
