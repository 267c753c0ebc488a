import type { CatchUp } from './catch-up.js';
import type { EtcdToFile } from './etcd-to-file.js';
import type { Memory } from './memory.js';
import { round, type Summary } from './stats.js';

/** Everything one `npm run bench` measured (bench/results.json, without the table). */
export interface Measured {
  floor: {
    etcdPut: { ack: Summary; watch: Summary };
    atomicWrite: Summary;
    fileEventDetection: Summary;
  };
  etcdToFile: {
    paced: EtcdToFile & { cpuMsPerChange: number };
    backToBack: EtcdToFile;
    passStages: Record<string, { ms: number; n: number }>;
    /** The paced run's alone: the target is on the paced p50, and back-to-back puts wait for the pass before. */
    pacedPassStages: Record<string, { ms: number; n: number }>;
  };
  fileToEtcd: {
    /** Plain write -> fs.watch event, plus a put -> another client's watch event. */
    floor: { p50: number; p99: number };
    paced: { linkEtcd: Summary; cpuMsPerChange: number };
    backToBack: { linkEtcd: Summary };
    passStages: Record<string, { ms: number; n: number }>;
  };
  catchUp: CatchUp;
  memory: { keys10k: Memory; keys100k: Memory };
  bulk: { filesToEtcdMs: number; etcdToFilesMs: number; runs: Record<string, number[]> };
  check: { keys: number; ms: number };
}

/** The bulk figures of an earlier results.json (every version so far has them in this shape). */
export interface Previous {
  bulk?: { filesToEtcdMs?: number; etcdToFilesMs?: number };
}

export interface Row {
  figure: string;
  measured: string;
  floor: string;
  target: string;
  /** Empty for figures reported without a target. */
  result: 'PASS' | 'MISS' | '';
}

/** Issue 12's targets (bench, this 2-core machine). */
const TARGET = {
  etcdToFileP50OverFloor: 2.0,
  etcdToFileP99OverFloor: 10,
  cpuPerChangeMs: 3,
  fileToEtcdP50: 8,
  fileToEtcdP99: 40,
  catchUpMs: 600,
  rss10kMb: 80,
  rss100kMb: 150,
  /** Without an earlier results.json: the bulk target before issue 12. */
  bulkMs: 2000,
  /** Single bulk runs have differed by ~20% between runs: a regression is what shows beyond that. */
  bulkNoise: 1.25,
};

const ms = (x: number) => `${x} ms`;
const verdict = (ok: boolean): Row['result'] => (ok ? 'PASS' : 'MISS');

function etcdToFileRows(name: string, r: EtcdToFile): Row[] {
  const p50Limit = round(r.floor.p50 + TARGET.etcdToFileP50OverFloor);
  const p99Limit = round(r.floor.p99 + TARGET.etcdToFileP99OverFloor);
  return [
    {
      figure: `etcd -> file, ${name}, p50`,
      measured: `${ms(r.linkEtcd.p50)} (+${r.p50OverFloor})`,
      floor: ms(r.floor.p50),
      target: `<= floor + ${TARGET.etcdToFileP50OverFloor.toFixed(1)} = ${ms(p50Limit)}`,
      result: verdict(r.linkEtcd.p50 <= p50Limit),
    },
    {
      figure: `etcd -> file, ${name}, p99`,
      measured: `${ms(r.linkEtcd.p99)} (+${r.p99OverFloor})`,
      floor: ms(r.floor.p99),
      target: `<= floor + ${TARGET.etcdToFileP99OverFloor} = ${ms(p99Limit)}`,
      result: verdict(r.linkEtcd.p99 <= p99Limit),
    },
  ];
}

function fileToEtcdRows(name: string, s: Summary, floor: { p50: number; p99: number }): Row[] {
  return [
    {
      figure: `file -> etcd, ${name}, p50`,
      measured: ms(s.p50),
      floor: ms(floor.p50),
      target: `<= ${ms(TARGET.fileToEtcdP50)}`,
      result: verdict(s.p50 <= TARGET.fileToEtcdP50),
    },
    {
      figure: `file -> etcd, ${name}, p99`,
      measured: ms(s.p99),
      floor: ms(floor.p99),
      target: `<= ${ms(TARGET.fileToEtcdP99)}`,
      result: verdict(s.p99 <= TARGET.fileToEtcdP99),
    },
  ];
}

function memoryRow(m: Memory, limitMb: number): Row {
  return {
    figure: `RSS, ${m.keys.toLocaleString('en')} keys in ${m.files.toLocaleString('en')} files, steady`,
    measured: `${m.rssMb} MB (peak ${m.peakMb})`,
    floor: '',
    target: `<= ${limitMb} MB`,
    result: verdict(m.rssMb <= limitMb),
  };
}

function bulkRow(direction: string, measured: number, previousMs: number | undefined): Row {
  // Older results.json files kept the bulk figures unrounded.
  const previous = previousMs === undefined ? undefined : Math.round(previousMs);
  const limit = previous === undefined ? TARGET.bulkMs : Math.round(previous * TARGET.bulkNoise);
  return {
    figure: `bulk 10,000 keys in 1,000 files, ${direction}`,
    measured: previous === undefined ? ms(measured) : `${ms(measured)} (baseline ${ms(previous)})`,
    floor: '',
    target:
      previous === undefined
        ? `<= ${ms(limit)}`
        : `no regression: <= baseline x ${TARGET.bulkNoise} = ${ms(limit)}`,
    result: verdict(measured <= limit),
  };
}

/** One row per figure issue 12 asks for, each against its target. */
export function rows(m: Measured, previous: Previous | undefined): Row[] {
  const f2eFloor = m.fileToEtcd.floor;
  return [
    ...etcdToFileRows('paced 30 ms', m.etcdToFile.paced),
    ...etcdToFileRows('back-to-back', m.etcdToFile.backToBack),
    {
      figure: 'CPU per etcd -> file change (200 paced)',
      measured: ms(m.etcdToFile.paced.cpuMsPerChange),
      floor: '',
      target: `<= ${ms(TARGET.cpuPerChangeMs)}`,
      result: verdict(m.etcdToFile.paced.cpuMsPerChange <= TARGET.cpuPerChangeMs),
    },
    ...fileToEtcdRows('paced 60 ms', m.fileToEtcd.paced.linkEtcd, f2eFloor),
    ...fileToEtcdRows('back-to-back', m.fileToEtcd.backToBack.linkEtcd, f2eFloor),
    {
      figure: 'CPU per file -> etcd change (200 paced)',
      measured: ms(m.fileToEtcd.paced.cpuMsPerChange),
      floor: '',
      target: '',
      result: '',
    },
    {
      figure: 'cold catch-up, 10,000 keys in 10 files: every file right',
      measured: ms(m.catchUp.everyFileRightMs),
      floor: '',
      target: `<= ${ms(TARGET.catchUpMs)}`,
      result: verdict(m.catchUp.everyFileRightMs <= TARGET.catchUpMs),
    },
    {
      figure: "cold catch-up: 'in sync' logged",
      measured: ms(m.catchUp.inSyncMs),
      floor: '',
      target: '',
      result: '',
    },
    memoryRow(m.memory.keys10k, TARGET.rss10kMb),
    memoryRow(m.memory.keys100k, TARGET.rss100kMb),
    bulkRow('files -> etcd', m.bulk.filesToEtcdMs, previous?.bulk?.filesToEtcdMs),
    bulkRow('etcd -> files', m.bulk.etcdToFilesMs, previous?.bulk?.etcdToFilesMs),
    {
      figure: `full reconcile's check of etcd, ${m.check.keys.toLocaleString('en')} keys`,
      measured: ms(m.check.ms),
      floor: '',
      target: '',
      result: '',
    },
  ];
}

/** A Markdown table, padded so it also reads as plain text. */
export function table(header: readonly string[], body: readonly (readonly string[])[]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((r) => (r[c] ?? '').length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((x, c) => x.padEnd(widths[c] ?? 0)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

export function rowsTable(r: readonly Row[]): string {
  return table(
    ['figure', 'measured', 'floor', 'target', 'result'],
    r.map((x) => [x.figure, x.measured, x.floor, x.target, x.result]),
  );
}

/** Every latency sample set behind the table, in ms. */
export function latencyTable(m: Measured): string {
  const s = (name: string, x: Summary) => [name, ...[x.p50, x.p99, x.max, x.n].map(String)];
  const e = m.etcdToFile;
  const f = m.fileToEtcd;
  return table(
    ['latency (ms)', 'p50', 'p99', 'max', 'n'],
    [
      s('floor: etcd put -> reply', m.floor.etcdPut.ack),
      s('floor: etcd put -> watch, other client', m.floor.etcdPut.watch),
      s('floor: file write -> fs.watch event', m.floor.fileEventDetection),
      s('floor: atomic file write (2 fsyncs)', m.floor.atomicWrite),
      s('etcd -> file paced: watch floor', e.paced.floor),
      s('etcd -> file paced: link-etcd', e.paced.linkEtcd),
      s('etcd -> file paced: added per put', e.paced.added),
      s('etcd -> file back-to-back: watch floor', e.backToBack.floor),
      s('etcd -> file back-to-back: link-etcd', e.backToBack.linkEtcd),
      s('etcd -> file back-to-back: added per put', e.backToBack.added),
      s('file -> etcd paced: link-etcd', f.paced.linkEtcd),
      s('file -> etcd back-to-back: link-etcd', f.backToBack.linkEtcd),
    ],
  );
}

export const stagesLine = (stages: Record<string, { ms: number; n: number }>): string =>
  Object.entries(stages)
    .map(([stage, { ms: mean, n }]) => `${stage} ${mean} (n ${n})`)
    .join(', ');
