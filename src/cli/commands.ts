import { resolve } from 'node:path';
import { ExitError } from '../errors.js';
import { confDir as defaultConfDir } from '../layout/conf-dir.js';
import { layout } from '../layout/mapping.js';
import { setNamePolicy } from '../layout/mirrored.js';
import { EtcdMiddleware } from '../middleware/middleware.js';
import { maskValue } from '../secrets.js';
import { defaultStateDir } from '../sync/base-journal.js';
import {
  describeConflicts,
  readConflicts,
  resolveConflicts,
  selectConflicts,
  showConflicts,
} from './conflicts.js';
import { parseListen } from './http.js';
import type { CliIo } from './program.js';
import { askDaemon, describeReport, offlineStatus, type StatusReport } from './status.js';
import { loadSyncSettings, type SyncKey, type SyncSettings } from './sync-settings.js';

interface Global {
  endpoints?: string;
  confDir?: string;
}

/** The same precedence as sync: the flag, then LINK_ETCD_ENDPOINTS, then middleware.conf. */
function etcdOf(global: Global): EtcdMiddleware {
  const endpoints = global.endpoints ?? (process.env.LINK_ETCD_ENDPOINTS || undefined);
  return new EtcdMiddleware({
    ...(endpoints === undefined ? {} : { endpoints }),
    ...(global.confDir === undefined ? {} : { confDir: global.confDir }),
  });
}

async function settingsOf(
  global: Global,
  given: Partial<Record<SyncKey, string | undefined>>,
): Promise<{ confDir: string; settings: SyncSettings }> {
  const confDir = resolve(global.confDir ?? defaultConfDir());
  const flags: Partial<Record<SyncKey, string>> = {};
  for (const [k, v] of Object.entries(given)) if (v !== undefined) flags[k as SyncKey] = v;
  const settings = await loadSyncSettings(confDir, flags);
  setNamePolicy(settings.allowAnyNames ? 'any' : 'portable');
  return { confDir, settings };
}

async function withEtcd<T>(global: Global, work: (etcd: EtcdMiddleware) => Promise<T>): Promise<T> {
  const etcd = etcdOf(global);
  try {
    return await work(etcd);
  } finally {
    await etcd.close();
  }
}

/** `link-etcd status`: 0 in sync, 1 something needs a person (or is not in sync yet). */
export async function runStatus(
  global: Global,
  opts: { json?: boolean; http?: string; offline?: boolean; prefix?: string; stateDir?: string },
  io: CliIo,
): Promise<number> {
  const { confDir, settings } = await settingsOf(global, {
    prefix: opts.prefix,
    state_dir: opts.stateDir,
    http: opts.http,
  });
  let report: StatusReport | undefined;
  let from = 'computed offline from the files, etcd and the base';
  if (!opts.offline && settings.http !== undefined) {
    report = await askDaemon(parseListen(settings.http));
    if (report !== undefined) from = `from the daemon at ${settings.http}`;
  }
  report ??= await withEtcd(global, (etcd) =>
    offlineStatus({
      confDir,
      prefix: settings.prefix,
      stateDir: resolve(settings.stateDir ?? defaultStateDir()),
      policy: settings.conflict,
      maxFileBytes: settings.maxFileSize,
      etcd,
    }),
  );
  if (opts.json) io.stdout(JSON.stringify(report));
  else for (const line of describeReport(report, from)) io.stdout(line);
  return report.inSync ? 0 : 1;
}

/** `link-etcd conflicts`: the open records, values of secret-looking keys masked. */
export async function runConflictsList(
  global: Global,
  opts: { json?: boolean; prefix?: string },
  io: CliIo,
): Promise<void> {
  const { confDir, settings } = await settingsOf(global, { prefix: opts.prefix });
  const entries = await readConflicts(confDir);
  const shown =
    entries.length === 0
      ? []
      : await withEtcd(global, (etcd) =>
          showConflicts(confDir, layout(settings.prefix).prefix, entries, etcd),
        );
  if (opts.json) io.stdout(JSON.stringify(shown));
  else for (const line of describeConflicts(shown)) io.stdout(line);
}

/** `link-etcd conflicts resolve FILE [KEY] --keep winner|loser`. */
export async function runConflictsResolve(
  global: Global,
  file: string,
  key: string | undefined,
  opts: { keep: 'winner' | 'loser'; prefix?: string },
  io: CliIo,
): Promise<void> {
  const { confDir, settings } = await settingsOf(global, { prefix: opts.prefix });
  const chosen = selectConflicts(await readConflicts(confDir), file, key);
  if (chosen.length === 0) {
    io.stderr(`link-etcd: no open conflict for ${file}${key === undefined ? '' : ` ${key}`}`);
    throw new ExitError(1);
  }
  const archived = await withEtcd(global, (etcd) =>
    resolveConflicts(confDir, layout(settings.prefix).prefix, chosen, opts.keep, etcd),
  );
  for (const c of chosen)
    io.stdout(
      `${c.file} [${c.section}] ${c.key}: kept the ${opts.keep}'s value (${opts.keep === 'loser' ? maskValue(c.key, c.loserValue) : c.winnerValue === undefined ? 'deleted' : maskValue(c.key, c.winnerValue)})`,
    );
  for (const a of archived) io.stdout(`archived: ${a}`);
}
