import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEtcd } from '../test/harness/etcd.js';
import { freePort } from '../test/harness/ports.js';
import { bulk, checkCost, rss } from './bulk.js';
import { atomicWrite, etcdPutToWatch, fileEventDetection } from './floor.js';
import { etcdToFile, fileToEtcd, stageMeans, startDaemon } from './propagation.js';
import type { Summary } from './stats.js';

const SAMPLES = 200;
const main = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const resultsFile = fileURLToPath(new URL('../../bench/results.json', import.meta.url));

const row = (name: string, s: Summary, target = '') =>
  `${name.padEnd(34)} ${String(s.p50).padStart(8)} ${String(s.p99).padStart(8)} ${String(s.max).padStart(8)} ${String(s.n).padStart(5)}  ${target}`;

async function main_(): Promise<void> {
  const etcd = await startEtcd();
  try {
    const dir = await mkdtemp(join(tmpdir(), 'link-etcd-bench-'));
    console.log('measuring the floor...');
    const floor = {
      etcdPutToWatch: await etcdPutToWatch(etcd.endpoint, SAMPLES),
      atomicWrite: await atomicWrite(dir, SAMPLES),
      fileEventDetection: await fileEventDetection(dir, SAMPLES),
    };
    const floorP50 = floor.etcdPutToWatch.p50 + floor.atomicWrite.p50 + floor.fileEventDetection.p50;

    console.log('measuring propagation through a link-etcd sync process...');
    const confDir = await mkdtemp(join(tmpdir(), 'link-etcd-bench-conf-'));
    const stateDir = await mkdtemp(join(tmpdir(), 'link-etcd-bench-state-'));
    const http = `127.0.0.1:${await freePort()}`;
    const daemon = await startDaemon({
      main,
      endpoint: etcd.endpoint,
      confDir,
      stateDir,
      prefix: '/b/',
      http,
    });
    const e2f = await etcdToFile(etcd.endpoint, confDir, '/b/', SAMPLES, 20);
    // Where an etcd -> file change spends its time inside a pass (the rest is the watch and the event loop).
    const stages = await stageMeans(http);
    const f2e = await fileToEtcd(etcd.endpoint, confDir, '/b/', SAMPLES, 60);
    await daemon.stop();

    console.log('measuring bulk mirroring and memory...');
    const bulkResult = await bulk(etcd.endpoint);
    const memory = await rss(main, etcd.endpoint);
    const check = await checkCost(etcd.endpoint);

    const lines = [
      '',
      `${'latency (ms)'.padEnd(34)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'max'.padStart(8)} ${'n'.padStart(5)}  target`,
      row('floor: etcd3 put -> watch', floor.etcdPutToWatch),
      row('floor: atomic file write', floor.atomicWrite),
      row('floor: file event detection', floor.fileEventDetection),
      `${'floor: sum of p50s'.padEnd(34)} ${floorP50.toFixed(2).padStart(8)}`,
      row('etcd -> file', e2f, `p50 <= ${(floorP50 + 2).toFixed(2)} (floor + 2), p99 <= 25`),
      row('file -> etcd', f2e, 'p50 <= 30, p99 <= 100'),
      `etcd -> file, mean per pass step (ms): ${Object.entries(stages)
        .map(([stage, { ms }]) => `${stage} ${ms}`)
        .join(', ')}`,
      '',
      `bulk 10,000 keys in 1,000 files, files -> etcd: ${Math.round(bulkResult.filesToEtcdMs)} ms (target <= 2000)`,
      `bulk 10,000 keys in 1,000 files, etcd -> files: ${Math.round(bulkResult.etcdToFilesMs)} ms (target <= 2000)`,
      `100,000 keys mirrored: RSS ${memory.rssMb} MB steady (target <= 250), ${memory.justSyncedMb} MB just after the initial sync, peak ${memory.peakMb} MB; initial sync ${memory.initialSyncMs} ms`,
      `full reconcile's check of etcd: ${check.keys.toLocaleString('en')} keys read in ${check.ms} ms (once per full reconcile, every 300 s by default)`,
    ];
    console.log(lines.join('\n'));
    const results = {
      date: new Date().toISOString(),
      machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
      floor: { ...floor, p50Sum: floorP50 },
      etcdToFile: e2f,
      fileToEtcd: f2e,
      passStages: stages,
      bulk: bulkResult,
      memory,
      check,
    };
    await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`\nwritten to bench/results.json`);
  } finally {
    await etcd.cleanup();
  }
}

await main_();
process.exit(0);
