import { readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { startEtcd } from '../test/harness/etcd.js';
import { freePort } from '../test/harness/ports.js';
import { bulk, checkCost } from './bulk.js';
import { coldCatchUp } from './catch-up.js';
import { startDaemon } from './daemon.js';
import { etcdToFileBackToBack, etcdToFilePaced } from './etcd-to-file.js';
import { fileToEtcdBackToBack, fileToEtcdPaced } from './file-to-etcd.js';
import { atomicWrite, etcdPut, fileEventDetection } from './floor.js';
import { rss } from './memory.js';
import { latencyTable, type Measured, type Previous, rows, rowsTable, stagesLine } from './report.js';
import { stageMeans, stageTotals } from './stages.js';
import { now, round } from './stats.js';
import { removeTempDirs, tempDir, tempDirs } from './temp.js';

const SAMPLES = 200;
/** Issue 12: etcd puts at least 30 ms apart; file writes 60 ms apart, an editor's pace. */
const ETCD_PACE_MS = 30;
const FILE_PACE_MS = 60;
const main = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const resultsFile = fileURLToPath(new URL('../../bench/results.json', import.meta.url));
const baselineFile = fileURLToPath(new URL('../../bench/baseline.json', import.meta.url));

const started = now();
const step = (what: string) =>
  console.log(`[${((now() - started) / 1000).toFixed(0).padStart(3)} s] ${what}`);

/** The last run's results, read before this run overwrites them: the bulk figures are compared with it. */
/** The bulk figures before issue 12 (bench/baseline.json): a fixed reference, not the last run's noise. */
async function readPrevious(): Promise<Previous | undefined> {
  try {
    return JSON.parse(await readFile(baselineFile, 'utf8')) as Previous;
  } catch {
    return undefined;
  }
}

/** etcd -> file and file -> etcd through one `link-etcd sync` process, with its CPU time and pass stages. */
async function propagation(
  endpoint: string,
): Promise<Pick<Measured, 'etcdToFile'> & { f2e: Omit<Measured['fileToEtcd'], 'floor'> }> {
  const { confDir, stateDir } = await tempDirs('propagation');
  const http = `127.0.0.1:${await freePort()}`;
  const prefix = '/b/';
  const daemon = await startDaemon({ main, endpoint, confDir, stateDir, prefix, http });
  try {
    const common = { endpoint, confDir, prefix, samples: SAMPLES };
    const atStart = await stageTotals(http);
    step(`etcd -> file, ${SAMPLES} puts ${ETCD_PACE_MS} ms apart`);
    const paced = await etcdToFilePaced({ ...common, daemonPid: daemon.pid, intervalMs: ETCD_PACE_MS });
    const afterPaced = await stageTotals(http);
    step(`etcd -> file, ${SAMPLES} puts back-to-back`);
    const backToBack = await etcdToFileBackToBack(common);
    const afterEtcdToFile = await stageTotals(http);
    step(`file -> etcd, ${SAMPLES} writes ${FILE_PACE_MS} ms apart`);
    const f2ePaced = await fileToEtcdPaced({ ...common, daemonPid: daemon.pid, intervalMs: FILE_PACE_MS });
    step(`file -> etcd, ${SAMPLES} writes back-to-back`);
    const f2eBackToBack = await fileToEtcdBackToBack(common);
    const afterFileToEtcd = await stageTotals(http);
    return {
      etcdToFile: {
        paced,
        backToBack,
        passStages: stageMeans(atStart, afterEtcdToFile),
        pacedPassStages: stageMeans(atStart, afterPaced),
      },
      f2e: {
        paced: f2ePaced,
        backToBack: f2eBackToBack,
        passStages: stageMeans(afterEtcdToFile, afterFileToEtcd),
      },
    };
  } finally {
    await daemon.stop();
  }
}

async function measure(endpoint: string): Promise<Measured> {
  step('floor: etcd put, atomic file write, file event');
  const floorDir = await tempDir('floor');
  const floor = {
    etcdPut: await etcdPut(endpoint, SAMPLES),
    atomicWrite: await atomicWrite(floorDir, SAMPLES),
    fileEventDetection: await fileEventDetection(floorDir, SAMPLES),
  };
  const { etcdToFile, f2e } = await propagation(endpoint);
  step('cold catch-up of 10,000 keys in 10 files');
  const catchUp = await coldCatchUp(main, endpoint);
  step('RSS with 10,000 keys (45 s idle)');
  const keys10k = await rss({ main, endpoint, prefix: '/rss-10k/', files: 10, keysPerFile: 1000 });
  step('RSS with 100,000 keys (45 s idle)');
  const keys100k = await rss({ main, endpoint, prefix: '/rss-100k/', files: 1000, keysPerFile: 100 });
  step("full reconcile's check of 100,000 keys");
  const check = await checkCost(endpoint, '/rss-100k/');
  step('bulk 10,000 keys in 1,000 files, each way (median of 5 runs each)');
  const bulkResult = await bulk(endpoint);
  return {
    floor,
    etcdToFile,
    fileToEtcd: {
      // What a change detected by fs.watch and then put must take at least, up to the bench's etcd watcher.
      floor: {
        p50: round(floor.fileEventDetection.p50 + floor.etcdPut.watch.p50),
        p99: round(floor.fileEventDetection.p99 + floor.etcdPut.watch.p99),
      },
      ...f2e,
    },
    catchUp,
    memory: { keys10k, keys100k },
    bulk: bulkResult,
    check,
  };
}

async function main_(): Promise<void> {
  const previous = await readPrevious();
  const etcd = await startEtcd();
  let m: Measured;
  try {
    m = await measure(etcd.endpoint);
  } finally {
    await etcd.cleanup();
    await removeTempDirs();
  }
  step('done');
  const table = rows(m, previous);
  const { catchUp, memory } = m;
  console.log(
    [
      '',
      latencyTable(m),
      '',
      `etcd -> file, mean ms per pass stage: ${stagesLine(m.etcdToFile.passStages)}`,
      `etcd -> file, paced run only: ${stagesLine(m.etcdToFile.pacedPassStages)}`,
      `file -> etcd, mean ms per pass stage: ${stagesLine(m.fileToEtcd.passStages)}`,
      `cold catch-up: files right at ${catchUp.perFileMs.join(', ')} ms; ${Math.round(catchUp.logBytes / 1024)} KB logged`,
      ...[memory.keys10k, memory.keys100k].map(
        (x) =>
          `${x.keys.toLocaleString('en')} keys: RSS ${x.justSyncedMb} MB just after the initial sync (${x.initialSyncMs} ms from spawn), ${x.rssMb} MB steady after 45 s idle (every 5 s: ${x.rssSeriesMb.join(', ')}), peak ${x.peakMb} MB; CPU over the idle 45 s ${x.settlingCpuMsPerS} ms/s`,
      ),
      '',
      rowsTable(table),
    ].join('\n'),
  );
  const results = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version },
    ...m,
    table,
  };
  await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
  console.log('\nwritten to bench/results.json');
}

await main_();
process.exit(0);
