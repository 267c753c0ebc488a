import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { EtcdMiddleware } from '../middleware/middleware.js';
import type { SyncCounters, SyncEngine } from '../sync/engine.js';

/** The daemon's Prometheus metrics, on a registry of their own (an embedding app keeps its default one). */
export interface SyncMetrics {
  readonly registry: Registry;
  readonly propagation: Histogram<'direction'>;
  readonly stages: Histogram<'stage'>;
}

const PREFIX = 'link_etcd_';

/**
 * Counters are read from the engine at scrape time: the engine knows
 * nothing of Prometheus, and nothing is counted twice.
 */
export function createMetrics(
  engine: () => SyncEngine | undefined,
  middleware: () => EtcdMiddleware,
): SyncMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: PREFIX });
  const last = new Map<string, number>();
  /** A Prometheus counter that follows a counter kept elsewhere (the engine's, the watch's). */
  const followValue = (
    metric: Counter<string>,
    id: string,
    now: number,
    labels: Record<string, string> = {},
  ) => {
    const delta = now - (last.get(id) ?? 0);
    if (delta > 0) metric.inc(labels, delta);
    last.set(id, now);
  };
  type Scalar = { [K in keyof SyncCounters]: SyncCounters[K] extends number ? K : never }[keyof SyncCounters];
  const follow = (metric: Counter<string>, key: Scalar, labels: Record<string, string> = {}) =>
    followValue(metric, `${key}${JSON.stringify(labels)}`, engine()?.status().counters[key] ?? 0, labels);
  /** A counter by reason: one series per reason seen so far. */
  const byReason = (name: string, help: string, key: 'pushFailures' | 'fileWriteFailures') =>
    new Counter({
      name: `${PREFIX}${name}`,
      help,
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        const counts = engine()?.status().counters[key] ?? {};
        for (const [reason, n] of Object.entries(counts))
          followValue(this, `${key}:${reason}`, n, { reason });
      },
    });
  byReason(
    'push_failures_total',
    'File transactions etcd refused (too_large, no_space, permission, other); the file is retried',
    'pushFailures',
  );
  byReason(
    'file_write_failures_total',
    'File writes that failed (no_space, permission, hook_refused, unsafe_path, other); the file is retried',
    'fileWriteFailures',
  );

  new Counter({
    name: `${PREFIX}changes_applied_total`,
    help: 'Keys written, by direction (to_etcd: from a file; to_file: from etcd)',
    labelNames: ['direction'],
    registers: [registry],
    collect() {
      follow(this, 'toEtcd', { direction: 'to_etcd' });
      follow(this, 'toFile', { direction: 'to_file' });
    },
  });
  // Counters that follow one number kept elsewhere: name, help, where the number is.
  const followed: ReadonlyArray<readonly [string, string, () => number]> = [
    [
      'conflicts_total',
      'Keys changed on both sides, decided by the conflict policy (the loser is recorded)',
      () => engine()?.status().counters.conflicts ?? 0,
    ],
    [
      'refused_keys_total',
      'etcd keys or file keys refused because they map to nothing safe',
      () => engine()?.status().counters.refused ?? 0,
    ],
    [
      'parse_errors_total',
      'Conf files that did not parse (each distinct error once)',
      () => engine()?.status().counters.parseErrors ?? 0,
    ],
    [
      'watch_divergence_total',
      'Keys a full reconcile found different in etcd than in the watch mirror (0 in a healthy run)',
      () => engine()?.status().counters.divergence ?? 0,
    ],
    [
      'etcd_regressions_total',
      "Times etcd's revision went back (wiped, restored) or its cluster changed under the daemon",
      () => engine()?.status().counters.regressions ?? 0,
    ],
    [
      'watch_reconnects_total',
      'etcd watch streams re-established after a failure',
      () => middleware().watchStats.reconnects,
    ],
    [
      'watch_resyncs_total',
      'Re-reads of the prefix after etcd compacted the revision the watch needed',
      () => middleware().watchStats.resyncs,
    ],
  ];
  for (const [name, help, read] of followed) {
    new Counter({
      name: `${PREFIX}${name}`,
      help,
      registers: [registry],
      collect() {
        followValue(this, name, read());
      },
    });
  }
  new Gauge({
    name: `${PREFIX}watch_lag_revisions`,
    help: 'Revisions of the prefix etcd has delivered that are not all in the files yet (0 when in sync)',
    registers: [registry],
    collect() {
      const status = engine()?.status();
      this.set(status === undefined ? 0 : Math.max(0, status.seenRevision - status.appliedRevision));
    },
  });
  new Gauge({
    name: `${PREFIX}last_full_reconcile_timestamp_seconds`,
    help: 'When the last full reconcile finished (unix time)',
    registers: [registry],
    collect() {
      const at = engine()?.status().lastFullReconcile;
      this.set(at === undefined ? 0 : at / 1000);
    },
  });
  new Gauge({
    name: `${PREFIX}ready`,
    help: '1 when in sync and not holding back a mass deletion',
    registers: [registry],
    collect() {
      this.set(engine()?.status().ready ? 1 : 0);
    },
  });
  const propagation = new Histogram({
    name: `${PREFIX}propagation_seconds`,
    help: 'From a change first seen on one side to its write on the other',
    labelNames: ['direction'],
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const stages = new Histogram({
    name: `${PREFIX}pass_stage_seconds`,
    help: 'Time spent in each step of a sync pass (wait after an etcd change, wait_file after a file event, read, plan, to_etcd, to_file, record) and of each file write in it (staged, visible, folder_synced)',
    labelNames: ['stage'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [registry],
  });
  return { registry, propagation, stages };
}
