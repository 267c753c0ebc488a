import { resolve } from 'node:path';
import { confDir as defaultConfDir } from '../layout/conf-dir.js';
import { EtcdMiddleware } from '../middleware/middleware.js';
import { defaultStateDir } from '../sync/base-journal.js';
import { SyncEngine } from '../sync/engine.js';
import type { ConflictPolicy } from '../sync/plan.js';
import { parseListen, serveHttp } from './http.js';
import { startLocalEtcd } from './local-etcd.js';
import { cliLogger, type LogFormat } from './logger.js';
import { createMetrics } from './metrics.js';
import type { CliIo } from './program.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export interface SyncFlags {
  prefix: string;
  conflict: ConflictPolicy;
  once?: boolean;
  dryRun?: boolean;
  stateDir?: string;
  allowMassDelete?: boolean;
  fullReconcile: string;
  logLevel: (typeof LOG_LEVELS)[number];
  http?: string;
  localEtcd?: boolean;
  logFormat?: LogFormat;
}

/** Carries a non-zero exit code out of a command without printing a second error line. */
export class SyncFailed extends Error {
  constructor(readonly exitCode: number) {
    super(`sync exited with ${exitCode}`);
  }
}

/** `link-etcd sync`: the daemon, `--once`, or `--dry-run`. Returns the exit code. */
export async function runSync(
  global: { endpoints?: string; confDir?: string },
  flags: SyncFlags,
  io: CliIo,
): Promise<number> {
  const seconds = Number(flags.fullReconcile);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    io.stderr(
      `link-etcd: --full-reconcile expects a positive number of seconds, got \`${flags.fullReconcile}\``,
    );
    return 2;
  }
  let listen: { host: string; port: number } | undefined;
  try {
    listen = flags.http === undefined ? undefined : parseListen(flags.http);
  } catch (error) {
    io.stderr(`link-etcd: ${(error as Error).message}`);
    return 2;
  }
  const logger = cliLogger(flags.logLevel, flags.logFormat);
  const confDir = resolve(global.confDir ?? defaultConfDir());
  const stateDir = resolve(flags.stateDir ?? defaultStateDir());
  const local = flags.localEtcd ? await startLocalEtcd(stateDir, logger) : undefined;
  const endpoints = local?.url ?? global.endpoints;
  const middleware = new EtcdMiddleware({
    ...(endpoints === undefined ? {} : { endpoints }),
    ...(global.confDir === undefined ? {} : { confDir: global.confDir }),
    logger,
  });
  let engineRef: SyncEngine | undefined;
  const metrics = createMetrics(
    () => engineRef,
    () => middleware,
  );
  const engine = new SyncEngine({
    onApplied: (direction, _keys, seconds) => metrics.propagation.observe({ direction }, seconds),
    confDir,
    prefix: flags.prefix,
    middleware,
    policy: flags.conflict,
    allowMassDelete: flags.allowMassDelete ?? false,
    fullReconcileMs: seconds * 1000,
    logger,
    stateDir,
  });
  engineRef = engine;
  const server =
    listen === undefined
      ? undefined
      : await serveHttp(listen, {
          registry: metrics.registry,
          ready: async () => {
            const reasons: string[] = [];
            if (!(await middleware.ping(2_000))) reasons.push('etcd does not answer');
            if (engine.lastFullReconcile === undefined) reasons.push('the first reconcile has not finished');
            for (const b of engine.blocked)
              reasons.push(`mass deletion held back (${b.side}: ${b.deletions} of ${b.of} keys)`);
            if (!middleware.watchStats.connected) reasons.push('the etcd watch is not connected');
            return { ok: reasons.length === 0, reasons };
          },
        });
  if (server) logger.info({ http: flags.http }, 'serving /healthz, /readyz and /metrics');
  try {
    if (flags.dryRun || flags.once) {
      const { plan } = await engine.once({ dryRun: flags.dryRun ?? false });
      if (flags.dryRun) {
        for (const w of plan.toEtcd) {
          io.stdout(
            `to etcd: ${w.value === undefined ? `delete ${w.key}` : `put ${w.key} = ${w.value}`} (${w.reason})`,
          );
        }
        for (const w of plan.toFile) {
          io.stdout(
            `to file: ${w.value === undefined ? `delete ${w.key}` : `put ${w.key} = ${w.value}`} (${w.reason})`,
          );
        }
        for (const b of plan.blocked)
          io.stdout(`held back: ${b.deletions} of ${b.of} deletions from ${b.side}`);
      }
      await engine.stop();
      if (plan.blocked.length > 0 && !flags.dryRun) {
        io.stderr(
          'link-etcd: mass deletion held back: restore the files or run again with --allow-mass-delete',
        );
        return 1;
      }
      return 0;
    }
    // etcd may be unreachable for a while: a stop request must not wait for it.
    const outcome = await Promise.race([
      engine.start().then(() => 'started' as const),
      io.stopped.then(() => 'stopped' as const),
    ]);
    if (outcome === 'started') {
      logger.info({ confDir, prefix: flags.prefix }, 'in sync; following both sides');
      await io.stopped;
    }
    logger.info('stopping: finishing writes in flight');
    await engine.stop();
    return 0;
  } finally {
    server?.close();
    await middleware.close();
    await local?.stop();
    logger.flush();
  }
}
