import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { EtcdMiddleware } from '../src/middleware/middleware.js';
import { SyncEngine } from '../src/sync/engine.js';
import { startDaemon } from './propagation.js';
import { now, sleep } from './stats.js';

const silent = pino({ level: 'silent' });

async function onceEngine(endpoint: string, confDir: string, prefix: string): Promise<number> {
  const middleware = new EtcdMiddleware({
    endpoints: `http://${endpoint}`,
    confDir: '/nonexistent',
    logger: silent,
  });
  const stateDir = await mkdtemp(join(tmpdir(), 'link-etcd-bench-state-'));
  const engine = new SyncEngine({ confDir, prefix, middleware, stateDir, logger: silent });
  const start = now();
  await engine.once();
  const took = now() - start;
  await engine.stop();
  await middleware.close();
  return took;
}

/** Writes `files` x `keysPerFile` keys to etcd in transactions of 100. */
export async function loadEtcd(
  endpoint: string,
  prefix: string,
  files: number,
  keysPerFile: number,
): Promise<void> {
  const client = new Etcd3({ hosts: endpoint });
  const ops: Array<[string, string]> = [];
  for (let f = 0; f < files; f++) {
    for (let k = 0; k < keysPerFile; k++)
      ops.push([`${prefix}d${f % 10}/f${f}.conf/S${k % 3}/key${k}`, `value ${f}.${k}`]);
  }
  for (let i = 0; i < ops.length; i += 100) {
    const chunk = ops.slice(i, i + 100);
    await client
      .if(chunk[0]?.[0] as string, 'Create', '>', -1)
      .then(...chunk.map(([k, v]) => client.put(k).value(v)))
      .commit();
  }
  client.close();
}

/** 10,000 keys in 1,000 files, each way: files -> etcd, then etcd -> files. */
export async function bulk(endpoint: string): Promise<{ filesToEtcdMs: number; etcdToFilesMs: number }> {
  const dirA = await mkdtemp(join(tmpdir(), 'link-etcd-bench-bulk-'));
  for (let f = 0; f < 1000; f++) {
    const lines = ['[S]'];
    for (let k = 0; k < 10; k++) lines.push(`key${k} = value ${f}.${k}`);
    await mkdir(join(dirA, `d${f % 10}`), { recursive: true });
    await writeFile(join(dirA, `d${f % 10}`, `f${f}.conf`), `${lines.join('\n')}\n`);
  }
  const filesToEtcdMs = await onceEngine(endpoint, dirA, '/bulk-up/');

  await loadEtcd(endpoint, '/bulk-down/', 1000, 10);
  const dirB = await mkdtemp(join(tmpdir(), 'link-etcd-bench-bulk-'));
  const etcdToFilesMs = await onceEngine(endpoint, dirB, '/bulk-down/');
  return { filesToEtcdMs, etcdToFilesMs };
}

/** RSS of a `link-etcd sync` process mirroring 100,000 keys (1,000 files of 100 keys). */
export async function rss(
  main: string,
  endpoint: string,
): Promise<{ rssMb: number; justSyncedMb: number; peakMb: number; initialSyncMs: number }> {
  await loadEtcd(endpoint, '/rss/', 1000, 100);
  const confDir = await mkdtemp(join(tmpdir(), 'link-etcd-bench-rss-'));
  const stateDir = await mkdtemp(join(tmpdir(), 'link-etcd-bench-rss-state-'));
  const start = now();
  const daemon = await startDaemon({ main, endpoint, confDir, stateDir, prefix: '/rss/' });
  const initialSyncMs = now() - start;
  await sleep(1000);
  // A figure for a daemon that mirrored nothing would be worthless: check it did the work.
  const written = (await readdir(confDir, { recursive: true })).filter((n) => n.endsWith('.conf')).length;
  const sample = await readFile(join(confDir, 'd7', 'f997.conf'), 'utf8');
  if (written !== 1000 || (sample.match(/^key\d+ = /gm) ?? []).length !== 100) {
    throw new Error(`the daemon mirrored ${written} files, not 1000 (sample: ${sample.length} bytes)`);
  }
  const kb = async (field: string) => {
    const status = await readFile(`/proc/${daemon.child.pid}/status`, 'utf8');
    return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN);
  };
  const justSynced = await kb('VmRSS');
  // Steady state: once idle, V8 gives back what the initial reconcile's transients took.
  await sleep(10_000);
  const steady = await kb('VmRSS');
  const peak = await kb('VmHWM');
  await daemon.stop();
  return {
    rssMb: Math.round(steady / 1024),
    justSyncedMb: Math.round(justSynced / 1024),
    peakMb: Math.round(peak / 1024),
    initialSyncMs: Math.round(initialSyncMs),
  };
}

/**
 * What the periodic full reconcile's check of etcd costs at the size the
 * RSS figure mirrors (run after rss(), which loaded /rss/): one paged read
 * of the whole prefix at one revision. Median of three.
 */
export async function checkCost(endpoint: string): Promise<{ keys: number; ms: number }> {
  const middleware = new EtcdMiddleware({
    endpoints: `http://${endpoint}`,
    confDir: '/nonexistent/link-etcd-bench',
    logger: pino({ level: 'silent' }),
  });
  try {
    const times: number[] = [];
    let keys = 0;
    for (let i = 0; i < 3; i++) {
      const start = now();
      keys = (await middleware.snapshot('/rss/')).entries.size;
      times.push(now() - start);
    }
    times.sort((a, b) => a - b);
    return { keys, ms: Math.round(times[1] as number) };
  } finally {
    await middleware.close();
  }
}
