import { resolve } from 'node:path';
import { strictModesRefusal } from '../files/strict-modes.js';
import { confDir as defaultConfDir } from '../layout/conf-dir.js';
import { setNamePolicy } from '../layout/mirrored.js';
import { EtcdMiddleware } from '../middleware/middleware.js';
import { maskValue } from '../secrets.js';
import { defaultStateDir } from '../sync/base-journal.js';
import { SyncEngine, type SyncReconfiguration } from '../sync/engine.js';
import { type ExecChild, startChild } from './exec-child.js';
import { Debouncer, Hooks } from './hooks.js';
import { parseListen } from './http.js';
import { startLocalEtcd } from './local-etcd.js';
import { cliLogger } from './logger.js';
import type { CliIo } from './program.js';
import type { RecentChanges } from './status-page.js';
import { loadSyncSettings, type SyncKey, type SyncSettings } from './sync-settings.js';

export interface SyncRun {
  readonly once?: boolean;
  readonly dryRun?: boolean;
  /** Forget the base and merge both sides as a union once. */
  readonly rebuildBase?: boolean;
  /** Settings given as flags; the rest come from LINK_ETCD_*, sync.conf and defaults. */
  readonly flags: Partial<Record<SyncKey, string | boolean>>;
}

/** `link-etcd sync`: the daemon, `--once`, or `--dry-run`. Returns the exit code. */
export async function runSync(
  global: { endpoints?: string; confDir?: string },
  run: SyncRun,
  io: CliIo,
): Promise<number> {
  const confDir = resolve(global.confDir ?? defaultConfDir());
  let settings: SyncSettings;
  let listen: { host: string; port: number } | undefined;
  try {
    settings = await loadSyncSettings(confDir, run.flags);
    listen = settings.http === undefined ? undefined : parseListen(settings.http);
  } catch (error) {
    io.stderr(`link-etcd: ${(error as Error).message}`);
    return 2;
  }
  if (!settings.allowInsecureConfDir) {
    const unsafe = await strictModesRefusal(confDir);
    if (unsafe !== undefined) {
      io.stderr(
        `link-etcd: refusing to run as root on the conf dir ${confDir}: ${unsafe}; make it root's alone, run link-etcd as another user, or pass --allow-insecure-conf-dir`,
      );
      return 1;
    }
  }
  // One rule for every name (layout/mirrored.ts): set before anything is scanned or watched.
  setNamePolicy(settings.allowAnyNames ? 'any' : 'portable');
  const logger = cliLogger(settings.logLevel, settings.logFormat);
  const stateDir = resolve(settings.stateDir ?? defaultStateDir());
  const local = settings.localEtcd ? await startLocalEtcd(stateDir, logger) : undefined;
  const endpoints = local?.url ?? global.endpoints ?? process.env.LINK_ETCD_ENDPOINTS;
  const newMiddleware = () =>
    new EtcdMiddleware({
      ...(endpoints === undefined || endpoints === '' ? {} : { endpoints }),
      // The local etcd has auth on: its own credentials win over middleware.conf's.
      ...(local === undefined ? {} : { username: local.username, password: local.password }),
      ...(global.confDir === undefined ? {} : { confDir: global.confDir }),
      logger,
    });
  let middleware = newMiddleware();
  let hooks = new Hooks(settings.hooks, logger, confDir);
  let child: ExecChild | undefined;
  const childReload = new Debouncer(500, 5_000, () => child?.reload());
  const hookOptions = (): SyncReconfiguration => ({
    checkFile: (path, staged) => hooks.check(path, staged),
    onFilesWritten: (paths) => {
      hooks.changed(paths);
      if (child) childReload.poke();
    },
  });

  let failFatal: (error: Error) => void = () => undefined;
  const fatal = new Promise<Error>((resolve) => {
    failFatal = resolve;
  });
  let engine: SyncEngine | undefined;
  // What only --http serves is loaded only with it: prom-client and the status page are tens of
  // milliseconds of a cold start, and a histogram observed on every change nobody reads is CPU.
  const served = listen === undefined ? undefined : await servedParts(() => engine, middleware);
  const recent = served?.recent;
  const metrics = served?.metrics;
  engine = new SyncEngine({
    confDir,
    prefix: settings.prefix,
    middleware,
    stateDir,
    policy: settings.conflict,
    allowMassDelete: settings.allowMassDelete,
    maxDeleteShare: settings.maxDeleteShare,
    maxFileBytes: settings.maxFileSize,
    rebuildBase: run.rebuildBase ?? false,
    fullReconcileMs: settings.fullReconcile * 1000,
    logger,
    // The status page's recent changes: keys and reasons, never values.
    onLanded: (direction, file, changes) => recent?.record(direction, file, changes),
    onApplied: (direction, _keys, seconds) => metrics?.propagation.observe({ direction }, seconds),
    onStage: (stage, seconds) => metrics?.stages.observe({ stage }, seconds),
    onFatal: (error) => failFatal(error),
    ...hookOptions(),
  });
  const running = engine;
  const server =
    listen === undefined || served === undefined
      ? undefined
      : await served.serveHttp(listen, {
          registry: served.metrics.registry,
          ready: async () => {
            const reasons: string[] = [];
            if (!(await middleware.ping(2_000))) reasons.push('etcd does not answer');
            if (!middleware.watchStats.connected) reasons.push('the etcd watch is not connected');
            // Failing files, held deletions, a regression being merged, a failed file watcher.
            reasons.push(...running.status().reasons);
            return { ok: reasons.length === 0, reasons };
          },
          status: () => served.daemonStatus(running, confDir, settings.prefix, middleware),
          recent: () => served.recent.report(),
        });
  if (server)
    logger.info({ http: settings.http }, 'serving /, /healthz, /readyz, /status, /recent and /metrics');

  /**
   * SIGHUP: middleware.conf and sync.conf again, same state. The new
   * settings are built aside and swapped in only once they work; reloads
   * run one at a time.
   */
  let reloading: Promise<void> = Promise.resolve();
  const reloadOnce = async () => {
    let candidate: EtcdMiddleware | undefined;
    try {
      const next = await loadSyncSettings(confDir, run.flags);
      if (next.prefix !== settings.prefix) logger.warn('a new prefix takes a restart; keeping the old one');
      candidate = newMiddleware();
      await candidate.connect();
      // The base belongs to one cluster: switching clusters is a restart, with its own base.
      const [before, after] = await Promise.all([middleware.clusterId(), candidate.clusterId()]);
      if (before !== after) {
        throw new Error(
          `the new settings lead to cluster ${after}, not ${before}: restart link-etcd to switch clusters`,
        );
      }
      const nextHooks = new Hooks(next.hooks, logger, confDir);
      const old = middleware;
      // Reloads already due for files written under the old hooks still run.
      hooks.stop({ flush: true });
      hooks = nextHooks;
      middleware = candidate;
      candidate = undefined;
      logger.level = next.logLevel;
      setNamePolicy(next.allowAnyNames ? 'any' : 'portable');
      await running.reconfigure({
        middleware,
        policy: next.conflict,
        allowMassDelete: next.allowMassDelete,
        maxDeleteShare: next.maxDeleteShare,
        fullReconcileMs: next.fullReconcile * 1000,
        ...hookOptions(),
      });
      await old.close();
      settings = next;
      logger.info('reloaded middleware.conf and sync.conf');
    } catch (error) {
      await candidate?.close();
      logger.error({ err: error }, `reload failed, the old settings stay: ${(error as Error).message}`);
    }
  };
  const reload = () => {
    reloading = reloading.then(reloadOnce);
    return reloading;
  };

  try {
    if (run.dryRun || run.once) {
      const { plan } = await running.once({ dryRun: run.dryRun ?? false });
      if (run.dryRun) {
        // Values go through maskValue: a dry run's output is pasted into tickets and chats.
        const planned = (w: { key: string; value?: string | undefined }) =>
          w.value === undefined ? `delete ${w.key}` : `put ${w.key} = ${maskValue(w.key, w.value)}`;
        for (const w of plan.toEtcd) io.stdout(`to etcd: ${planned(w)} (${w.reason})`);
        for (const w of plan.toFile) io.stdout(`to file: ${planned(w)} (${w.reason})`);
        for (const b of plan.blocked)
          io.stdout(`held back: ${b.deletions} of ${b.of} deletions from ${b.side}`);
      }
      await running.stop();
      if (plan.blocked.length > 0 && !run.dryRun) {
        io.stderr(
          'link-etcd: mass deletion held back: restore the files or run again with --allow-mass-delete',
        );
        return 1;
      }
      return 0;
    }
    io.onReload?.(() => void reload());
    // etcd may be unreachable for a while: a stop request must not wait for it.
    const outcome = await Promise.race([
      running.start().then(() => 'started' as const),
      io.stopped.then(() => 'stopped' as const),
    ]);
    if (outcome === 'stopped') {
      await running.stop();
      return 0;
    }
    logger.info({ confDir, prefix: settings.prefix }, 'in sync; following both sides');
    const stopOrFail = Promise.race([io.stopped.then(() => undefined), fatal]);
    if (settings.exec === undefined) {
      const failure = await stopOrFail;
      logger.info('stopping: finishing writes in flight');
      await running.stop();
      if (failure) {
        io.stderr(`link-etcd: ${failure.message}`);
        return 1;
      }
      return 0;
    }
    child = startChild(settings.exec, settings.reloadSignal, logger);
    const live = child;
    const first = await Promise.race([
      live.exited.then((code) => ({ code, failure: undefined })),
      stopOrFail.then((failure) => ({ code: undefined, failure })),
    ]);
    if (first.code === undefined) {
      live.stop('SIGTERM');
      await live.exited;
    }
    await running.stop();
    if (first.failure) {
      // The sync is dead (credentials revoked, say): the app must not run on, unsynced.
      io.stderr(`link-etcd: ${first.failure.message}`);
      return 1;
    }
    return first.code ?? (await live.exited);
  } finally {
    childReload.cancel();
    hooks.stop();
    server?.close();
    await middleware.close();
    await local?.stop();
    logger.flush();
  }
}

/** The parts of --http: metrics, the status page's recent changes, the server and /status. */
async function servedParts(engine: () => SyncEngine | undefined, middleware: EtcdMiddleware) {
  const [{ createMetrics }, { RecentChanges }, { serveHttp }, { daemonStatus }] = await Promise.all([
    import('./metrics.js'),
    import('./status-page.js'),
    import('./http.js'),
    import('./status.js'),
  ]);
  return {
    metrics: createMetrics(engine, () => middleware),
    recent: new RecentChanges() as RecentChanges,
    serveHttp,
    daemonStatus,
  };
}
