import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { EtcdMiddleware } from '../src/middleware/middleware.js';
import { SyncEngine } from '../src/sync/engine.js';
import { median, now } from './stats.js';
import { tempDir } from './temp.js';

const silent = pino({ level: 'silent' });
/**
 * Runs of each bulk figure; the median is reported: single runs vary by
 * tens of percent here, and the first one also pays for compiling the
 * engine's code in this process.
 */
const RUNS = 5;

async function onceEngine(endpoint: string, confDir: string, prefix: string): Promise<number> {
  const middleware = new EtcdMiddleware({
    endpoints: `http://${endpoint}`,
    confDir: '/nonexistent',
    logger: silent,
  });
  const stateDir = await tempDir('bulk-state');
  const engine = new SyncEngine({ confDir, prefix, middleware, stateDir, logger: silent });
  const start = now();
  await engine.once();
  const took = now() - start;
  await engine.stop();
  await middleware.close();
  return took;
}

/** Where loadEtcd() puts key `k` of file `f`, relative to the conf dir. */
export const loadedFile = (f: number): string => join(`d${f % 10}`, `f${f}.conf`);

/**
 * Writes `files` x `keysPerFile` keys to etcd in transactions of 100, the
 * value of key k in file f being `<value> f.k`: a second load with another
 * `value` changes every key, and a file shows it once every line has it.
 */
export async function loadEtcd(
  endpoint: string,
  prefix: string,
  files: number,
  keysPerFile: number,
  value = 'value',
): Promise<void> {
  const client = new Etcd3({ hosts: endpoint });
  const ops: Array<[string, string]> = [];
  for (let f = 0; f < files; f++) {
    for (let k = 0; k < keysPerFile; k++)
      ops.push([`${prefix}${loadedFile(f)}/S${k % 3}/key${k}`, `${value} ${f}.${k}`]);
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

/**
 * 10,000 keys in 1,000 files, each way, by one in-process reconcile
 * (`SyncEngine.once()`): files -> an empty prefix, then a loaded prefix ->
 * an empty conf dir. Median of `RUNS` runs each.
 */
export async function bulk(endpoint: string): Promise<{
  filesToEtcdMs: number;
  etcdToFilesMs: number;
  runs: { filesToEtcdMs: number[]; etcdToFilesMs: number[] };
}> {
  const dirA = await tempDir('bulk-up');
  for (let f = 0; f < 1000; f++) {
    const lines = ['[S]'];
    for (let k = 0; k < 10; k++) lines.push(`key${k} = value ${f}.${k}`);
    await mkdir(join(dirA, `d${f % 10}`), { recursive: true });
    await writeFile(join(dirA, loadedFile(f)), `${lines.join('\n')}\n`);
  }
  const up: number[] = [];
  for (let run = 0; run < RUNS; run++) up.push(await onceEngine(endpoint, dirA, `/bulk-up-${run}/`));

  await loadEtcd(endpoint, '/bulk-down/', 1000, 10);
  const down: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const dirB = await tempDir('bulk-down');
    down.push(await onceEngine(endpoint, dirB, '/bulk-down/'));
  }
  return {
    filesToEtcdMs: Math.round(median(up)),
    etcdToFilesMs: Math.round(median(down)),
    runs: { filesToEtcdMs: up.map(Math.round), etcdToFilesMs: down.map(Math.round) },
  };
}

/**
 * What the periodic full reconcile's check of etcd costs at `prefix`: one
 * paged read of the whole prefix at one revision. Median of three.
 */
export async function checkCost(endpoint: string, prefix: string): Promise<{ keys: number; ms: number }> {
  const middleware = new EtcdMiddleware({
    endpoints: `http://${endpoint}`,
    confDir: '/nonexistent/link-etcd-bench',
    logger: silent,
  });
  try {
    const times: number[] = [];
    let keys = 0;
    for (let i = 0; i < 3; i++) {
      const start = now();
      keys = (await middleware.snapshot(prefix)).entries.size;
      times.push(now() - start);
    }
    return { keys, ms: Math.round(median(times)) };
  } finally {
    await middleware.close();
  }
}
