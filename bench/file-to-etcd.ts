import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { quietCpuMs } from './proc.js';
import { latencies, type PacedArgs, paced, type RunArgs, Sightings } from './sightings.js';
import { now, round, type Summary, summarize } from './stats.js';

interface Observed {
  write(i: number): Promise<void>;
  readonly sent: number[];
  readonly etcd: Sightings;
  close(): Promise<void>;
}

/**
 * Rewrites `<name>` in place (writeFile: truncate then write, as many
 * editors save) and watches its key in etcd from the bench's own client.
 */
async function observe(endpoint: string, confDir: string, prefix: string, name: string): Promise<Observed> {
  const client = new Etcd3({ hosts: endpoint });
  const file = join(confDir, name);
  const etcd = new Sightings(`etcd key ${prefix}${name}/S/k`);
  const watcher = await client.watch().key(`${prefix}${name}/S/k`).create();
  watcher.on('put', (kv) => etcd.see(Number(kv.value.toString())));
  // The daemon mirrors the file and the watcher works before the first timed write.
  await writeFile(file, '[S]\nk = -1\n');
  await etcd.seen(-1);
  const sent: number[] = [];
  return {
    sent,
    etcd,
    write: (i) => {
      sent[i] = now();
      return writeFile(file, `[S]\nk = ${i}\n`);
    },
    close: async () => {
      await watcher.cancel();
      client.close();
    },
  };
}

/** file -> etcd, paced: the file rewritten every `intervalMs`, each write timed until etcd's watchers see it. */
export async function fileToEtcdPaced(
  args: PacedArgs,
): Promise<{ linkEtcd: Summary; cpuMsPerChange: number }> {
  const o = await observe(args.endpoint, args.confDir, args.prefix, 'f2e-paced.conf');
  const cpuBefore = await quietCpuMs(args.daemonPid);
  await paced(args.samples, args.intervalMs, (i) => o.write(i));
  await o.etcd.seen(args.samples - 1);
  const cpu = (await quietCpuMs(args.daemonPid)) - cpuBefore;
  await o.close();
  return { linkEtcd: summarize(latencies(o.sent, o.etcd)), cpuMsPerChange: round(cpu / args.samples, 3) };
}

/** file -> etcd, back-to-back: each write made the moment etcd has shown the previous one. */
export async function fileToEtcdBackToBack(args: RunArgs): Promise<{ linkEtcd: Summary }> {
  const o = await observe(args.endpoint, args.confDir, args.prefix, 'f2e-back-to-back.conf');
  for (let i = 0; i < args.samples; i++) {
    await o.write(i);
    await o.etcd.seen(i);
  }
  await o.close();
  return { linkEtcd: summarize(latencies(o.sent, o.etcd)) };
}
