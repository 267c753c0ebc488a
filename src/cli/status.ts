import { layout } from '../layout/mapping.js';
import type { EtcdMiddleware } from '../middleware/middleware.js';
import { scanConfDir } from '../sync/conf-files.js';
import { SyncEngine } from '../sync/engine.js';
import type { Blocked } from '../sync/guard.js';
import type { ConflictPolicy } from '../sync/merge.js';
import type { SyncCounters } from '../sync/sync-report.js';
import { readConflicts, type ShownConflict, showConflicts } from './conflicts.js';
import { cliLogger } from './logger.js';

export type FileState =
  | 'in-sync'
  | 'pending'
  | 'pending-to-etcd'
  | 'pending-to-file'
  | 'failing'
  | 'conflict';

export interface FileStatus {
  /** Conf path, relative to the conf dir. */
  readonly file: string;
  /** The worst of what holds for it: failing, then conflict, then pending, else in-sync. */
  readonly state: FileState;
  /** Keys waiting to go each way (offline only: the daemon knows a file is pending, not how). */
  readonly toEtcd: number;
  readonly toFile: number;
  /** Why it is failing (unreadable, a write refused). */
  readonly reasons: readonly string[];
  /** Open conflict records' keys of this file (see `link-etcd conflicts`). */
  readonly conflicts: number;
  /** Keys of this file (or under it in etcd) refused as unsafe names, since the daemon started. */
  readonly refused: number;
}

/** What `link-etcd status --json` prints and `GET /status` serves. */
export interface StatusReport {
  /** `daemon`: asked the running daemon; `offline`: computed from the files, etcd and the base (a dry run). */
  readonly source: 'daemon' | 'offline';
  /** Every file in sync, nothing failing, held back or in conflict: `status` exits 0. */
  readonly inSync: boolean;
  /** What a person must look at (each one line); empty when nothing needs one. */
  readonly needsAttention: readonly string[];
  readonly files: readonly FileStatus[];
  /** Open conflict records, values of secret-looking keys masked. */
  readonly conflicts: readonly ShownConflict[];
  /** Deletions the mass-deletion guard holds back. */
  readonly blocked: readonly Blocked[];
  /** Names refused as unsafe (a file's `file [section] key`, or an etcd key), and why; informational. */
  readonly refused: ReadonlyArray<{ readonly what: string; readonly reason: string }>;
  /** The etcd watch (daemon only): newest revision delivered, newest all in the files, the gap. */
  readonly watch: {
    readonly seenRevision: number;
    readonly appliedRevision: number;
    readonly lag: number;
  } | null;
  /** When the last full reconcile ended (ISO 8601), null before the first. */
  readonly lastFullReconcile: string | null;
  /** The daemon's counters since it started (daemon only). */
  readonly counters: Readonly<SyncCounters> | null;
}

/** Mirrored conf files under the conf dir, relative, sorted (none when it is missing). */
function mirroredFiles(confDir: string): Promise<string[]> {
  return scanConfDir(confDir).catch(() => [] as string[]);
}

interface Parts {
  readonly source: 'daemon' | 'offline';
  readonly confDir: string;
  readonly prefix: string;
  readonly etcd: EtcdMiddleware;
  readonly extraFiles: readonly string[];
  readonly pending: ReadonlyMap<string, { toEtcd: number; toFile: number }>;
  readonly failing: ReadonlyArray<{ file: string; reason: string }>;
  readonly blocked: readonly Blocked[];
  readonly refused: ReadonlyArray<{ readonly what: string; readonly reason: string }>;
  readonly reasons: readonly string[];
  readonly watch: StatusReport['watch'];
  readonly lastFullReconcile: number | undefined;
  readonly counters: Readonly<SyncCounters> | null;
}

async function assemble(p: Parts): Promise<StatusReport> {
  const conflicts = await showConflicts(p.confDir, p.prefix, await readConflicts(p.confDir), p.etcd);
  const open = conflicts.filter((c) => c.state === 'open');
  const names = new Set([
    ...(await mirroredFiles(p.confDir)),
    ...p.extraFiles,
    ...p.pending.keys(),
    ...p.failing.map((f) => f.file),
    ...open.map((c) => c.file),
  ]);
  const files: FileStatus[] = [...names].sort().map((file) => {
    const reasons = p.failing.filter((f) => f.file === file).map((f) => f.reason);
    const conflictCount = open.filter((c) => c.file === file).length;
    const refused = p.refused.filter((r) => refusedFile(p.prefix, r.what) === file).length;
    const pending = p.pending.get(file);
    const toEtcd = pending?.toEtcd ?? 0;
    const toFile = pending?.toFile ?? 0;
    const state: FileState =
      reasons.length > 0
        ? 'failing'
        : conflictCount > 0
          ? 'conflict'
          : pending === undefined
            ? 'in-sync'
            : toEtcd > 0 && toFile === 0
              ? 'pending-to-etcd'
              : toFile > 0 && toEtcd === 0
                ? 'pending-to-file'
                : 'pending';
    return { file, state, toEtcd, toFile, reasons, conflicts: conflictCount, refused };
  });
  const needsAttention = [...p.reasons];
  for (const c of open)
    needsAttention.push(
      `${c.file} [${c.section}] ${c.key}: open conflict (${c.loser} lost), see link-etcd conflicts`,
    );
  const inSync = needsAttention.length === 0 && files.every((f) => f.state === 'in-sync');
  return {
    source: p.source,
    inSync,
    needsAttention,
    files,
    conflicts,
    blocked: p.blocked,
    refused: p.refused,
    watch: p.watch,
    lastFullReconcile: p.lastFullReconcile === undefined ? null : new Date(p.lastFullReconcile).toISOString(),
    counters: p.counters,
  };
}

/** The running daemon's view: `GET /status`. */
export async function daemonStatus(
  engine: SyncEngine,
  confDir: string,
  prefix: string,
  etcd: EtcdMiddleware,
): Promise<StatusReport> {
  const status = engine.status();
  const pending = new Map(engine.pendingFiles().map((f) => [f, { toEtcd: 0, toFile: 0 }] as const));
  return assemble({
    source: 'daemon',
    confDir,
    prefix: layout(prefix).prefix,
    etcd,
    extraFiles: [],
    pending,
    failing: status.failing,
    blocked: status.blocked,
    refused: status.refused,
    reasons: status.reasons,
    watch: {
      seenRevision: status.seenRevision,
      appliedRevision: status.appliedRevision,
      lag: Math.max(0, status.seenRevision - status.appliedRevision),
    },
    lastFullReconcile: status.lastFullReconcile,
    counters: status.counters,
  });
}

/** The conf path of an etcd key under `prefix`: up to and including its `.conf` segment. */
function fileOfKey(prefix: string, key: string): string {
  const rest = key.slice(prefix.length);
  const end = rest.indexOf('.conf/');
  return end < 0 ? rest : rest.slice(0, end + 5);
}

/** The conf file a refused name belongs to: `file [section] key` from the files, or an etcd key. */
function refusedFile(prefix: string, what: string): string | undefined {
  if (what.startsWith(prefix)) return fileOfKey(prefix, what);
  const cut = what.indexOf(' [');
  return cut < 0 ? undefined : what.slice(0, cut);
}

/** No daemon answers: a dry run (nothing written, no temp file removed) over the files, etcd and the base. */
export async function offlineStatus(options: {
  confDir: string;
  prefix: string;
  stateDir: string;
  policy: ConflictPolicy;
  maxFileBytes: number;
  etcd: EtcdMiddleware;
}): Promise<StatusReport> {
  const prefix = layout(options.prefix).prefix;
  const engine = new SyncEngine({
    confDir: options.confDir,
    prefix,
    middleware: options.etcd,
    stateDir: options.stateDir,
    policy: options.policy,
    maxFileBytes: options.maxFileBytes,
    watchFiles: false,
    logger: cliLogger('silent', 'json'),
  });
  let plan: Awaited<ReturnType<SyncEngine['once']>>['plan'];
  try {
    ({ plan } = await engine.once({ dryRun: true }));
  } finally {
    await engine.stop({ save: false });
  }
  const pending = new Map<string, { toEtcd: number; toFile: number }>();
  const bump = (key: string, way: 'toEtcd' | 'toFile') => {
    const file = fileOfKey(prefix, key);
    const now = pending.get(file) ?? { toEtcd: 0, toFile: 0 };
    now[way]++;
    pending.set(file, now);
  };
  for (const w of plan.toEtcd) bump(w.key, 'toEtcd');
  for (const w of plan.toFile) bump(w.key, 'toFile');
  const status = engine.status();
  const reasons = status.failing.map((f) => `${f.file}: ${f.reason}`);
  for (const b of plan.blocked)
    reasons.push(`mass deletion would be held back (${b.side}: ${b.deletions} of ${b.of} keys)`);
  return assemble({
    source: 'offline',
    confDir: options.confDir,
    prefix,
    etcd: options.etcd,
    extraFiles: [],
    pending,
    failing: status.failing,
    blocked: plan.blocked,
    refused: status.refused,
    reasons,
    watch: null,
    lastFullReconcile: undefined,
    counters: null,
  });
}

const LABEL: Record<FileState, string> = {
  'in-sync': 'in sync',
  pending: 'pending',
  'pending-to-etcd': 'to etcd',
  'pending-to-file': 'to file',
  failing: 'FAILING',
  conflict: 'CONFLICT',
};

/** `link-etcd status` for a person, like `git status`. */
export function describeReport(r: StatusReport, from: string): string[] {
  const lines = [`link-etcd status (${from})`];
  if (r.files.length === 0) lines.push('  no mirrored files');
  for (const f of r.files) {
    const counts = f.toEtcd + f.toFile > 0 ? ` (${f.toEtcd} to etcd, ${f.toFile} to file)` : '';
    const extra = [
      ...f.reasons,
      ...(f.conflicts > 0 ? [`${f.conflicts} open conflict(s): link-etcd conflicts`] : []),
      ...(f.refused > 0 ? [`${f.refused} key(s) refused`] : []),
    ];
    lines.push(
      `  ${LABEL[f.state].padEnd(9)} ${f.file}${counts}${extra.length ? `: ${extra.join('; ')}` : ''}`,
    );
  }
  for (const b of r.blocked) lines.push(`held back: ${b.deletions} of ${b.of} deletions from ${b.side}`);
  if (r.refused.length > 0) lines.push('refused names (never mirrored):');
  for (const x of r.refused.slice(0, 10)) lines.push(`  ${x.what}: ${x.reason}`);
  if (r.refused.length > 10) lines.push(`  and ${r.refused.length - 10} more (--json lists them)`);
  if (r.watch)
    lines.push(
      `watch: revision ${r.watch.seenRevision} seen, ${r.watch.appliedRevision} in the files (lag ${r.watch.lag})`,
    );
  if (r.source === 'daemon') lines.push(`last full reconcile: ${r.lastFullReconcile ?? 'not yet'}`);
  if (r.needsAttention.length > 0) {
    lines.push('needs a person:');
    for (const n of r.needsAttention) lines.push(`  - ${n}`);
  } else lines.push(r.inSync ? 'everything is in sync' : 'changes pending: not in sync yet');
  return lines;
}

/** GET `/status` of a daemon: undefined when none answers there. */
export async function askDaemon(listen: { host: string; port: number }): Promise<StatusReport | undefined> {
  const host = listen.host === '0.0.0.0' || listen.host === '::' ? '127.0.0.1' : listen.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${listen.port}/status`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3_000) });
    if (!res.ok) return undefined;
    const body = (await res.json()) as StatusReport;
    return body.source === 'daemon' ? body : undefined;
  } catch {
    return undefined;
  }
}
