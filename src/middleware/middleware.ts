import { mergeMap, Observable, type Subscriber } from 'rxjs';
import { ClosedError, EtcdKeyError } from '../errors.js';
import { defaultLogger, type Logger } from '../log.js';
import { type ClusterStatus, readClusterStatus } from './cluster-status.js';
import { withDeadline } from './connection.js';
import { GuardedObservable } from './guarded.js';
import { bounded, type Live, openLive, verifyLive } from './live.js';
import { prefixEnd, readRange } from './range.js';
import type { ConnectionOptions, EtcdSettings, SnakeCaseConnectionOptions } from './settings.js';
import type { SrvResolver } from './srv.js';
import { buildTree, flattenTree, normalizePath, type Tree, type TreeInput } from './tree.js';
import { readSubtree, subtreeExists } from './tree-reads.js';
import { deleteSubtree, mergeIntoSubtree, replaceSubtree, writeIfUnchanged } from './tree-writes.js';
import {
  type EtcdChange,
  newWatchStats,
  type StateEntry,
  type WatchBatch,
  type WatchOptions,
  type WatchStats,
  watchBatches,
} from './watch.js';

export type { ClusterStatus } from './cluster-status.js';

export interface MiddlewareOptions extends ConnectionOptions, SnakeCaseConnectionOptions {
  /** Where middleware.conf is looked up (`<confDir>/link/etcd/middleware.conf`). Default `$B3J0F_CONF_DIR` or `~/etc`. */
  confDir?: string;
  /**
   * Endpoints as URLs (`http://10.0.0.1:2379,https://...`), overriding `host`,
   * `port` and `protocol`: the CLI's `--endpoints`.
   */
  endpoints?: string | readonly string[];
  /** A pino logger; default JSON on stderr at `LINK_ETCD_LOG_LEVEL` (default `warn`). */
  logger?: Logger;
  /** DNS SRV lookup, replaceable for tests. */
  srvResolver?: SrvResolver;
}

/**
 * An etcd v3 client with link.etcd's dict protocol: `set` a nested value,
 * `get` the tree back, `delete` a subtree, `has` a path, and `watch` a prefix.
 * Settings come from `$B3J0F_CONF_DIR/link/etcd/middleware.conf`, overridden
 * by the constructor's options. It connects lazily, on first use.
 */
export class EtcdMiddleware {
  private readonly options: MiddlewareOptions;
  private readonly logger: Logger;
  private live: Promise<Live> | undefined;
  private readonly streams = new Set<Subscriber<WatchBatch>>();
  private closed = false;
  /** What the watch streams went through (all of them together): for metrics and health. */
  readonly watchStats: WatchStats = newWatchStats();

  constructor(options: MiddlewareOptions = {}) {
    this.options = options;
    this.logger = options.logger ?? defaultLogger();
  }

  /** Opens the connection and checks the cluster answers (and is the expected one). Idempotent. */
  async connect(): Promise<this> {
    const live = await this.open();
    await verifyLive(live);
    return this;
  }

  /** Closes the connection and completes the watch streams; the next call connects again. */
  async disconnect(): Promise<void> {
    const live = this.live;
    this.live = undefined;
    for (const s of [...this.streams]) s.complete();
    if (live) (await live.catch(() => undefined))?.conn.pool.close();
  }

  /** True while a connection is open (as in link.etcd: opened, not necessarily healthy). */
  isconnected(): boolean {
    return this.live !== undefined && !this.closed;
  }

  /** The resolved settings (the password shows as `***` when printed). */
  async settings(): Promise<EtcdSettings> {
    return (await this.open()).settings;
  }

  /**
   * Replaces the subtree at `path` with `value`: a dict as keys, a list as
   * children `1..n`, a scalar as its text; keys under `path` that `value`
   * lacks are deleted. One transaction, so no reader sees half of it; past
   * `max_txn_ops` operations the write is split into several transactions
   * (new keys first, stale keys last) and is then NOT atomic.
   */
  async set(path: string, value: TreeInput): Promise<void> {
    const at = normalizePath(path);
    const entries = flattenTree(at, value);
    await this.call((live, deadline) => replaceSubtree(live, this.logger, at, entries, deadline));
  }

  /**
   * Writes the keys of `value` under `path` and leaves every other key
   * alone: a merge, where `set` replaces. One transaction up to
   * `max_txn_ops` keys, several (not atomic) past it.
   */
  async update(path: string, value: TreeInput): Promise<void> {
    const entries = flattenTree(normalizePath(path), value);
    if (entries.size === 0) return;
    await this.call((live) => mergeIntoSubtree(live, this.logger, entries));
  }

  /**
   * Writes keys (value undefined: delete) in one transaction, only if every
   * key still has the mod revision expected (0: absent). Returns the
   * revision of the write, or undefined when another writer got there first.
   * At most `max_txn_ops` keys.
   */
  async writeIfUnchanged(
    writes: ReadonlyArray<{
      readonly key: string;
      readonly value: string | undefined;
      readonly expectRevision: number;
    }>,
  ): Promise<number | undefined> {
    if (writes.length === 0) return undefined;
    return this.call((live) => writeIfUnchanged(live, writes));
  }

  /** The value at `path`: its text, or the tree under it. Rejects with {@link EtcdKeyError} when nothing is there. */
  async get(path: string): Promise<Tree> {
    const at = normalizePath(path);
    const tree = await this.call(async ({ conn, settings }) => {
      const { kvs } = await readSubtree(conn, settings, at, false);
      return buildTree(
        at,
        kvs.map((kv) => [kv.key, kv.value] as const),
      );
    });
    if (tree === undefined) throw new EtcdKeyError(at);
    return tree;
  }

  /** Every key starting with `prefix` (a plain key prefix) and its value, read at one revision, page by page. */
  async list(prefix: string): Promise<Map<string, string>> {
    return this.call(async ({ conn, settings }) => {
      const { kvs } = await readRange(
        conn.kv,
        { key: Buffer.from(prefix), range_end: prefixEnd(prefix) },
        { pageSize: settings.pageSize },
      );
      return new Map(kvs.map((kv) => [kv.key, kv.value]));
    });
  }

  /**
   * Every key under `prefix` with its value and mod revision, read page by
   * page at one revision, and that revision: what a full reconcile compares
   * the watch's mirror with.
   */
  async snapshot(prefix: string): Promise<{ revision: number; entries: Map<string, StateEntry> }> {
    return this.call(async ({ conn, settings }) => {
      const entries = new Map<string, StateEntry>();
      const { revision } = await readRange(
        conn.kv,
        { key: Buffer.from(prefix), range_end: prefixEnd(prefix) },
        {
          pageSize: settings.pageSize,
          each: (kv) => entries.set(kv.key, { value: kv.value, modRevision: kv.modRevision }),
        },
      );
      return { revision, entries };
    });
  }

  /**
   * etcd's current revision and cluster id, from a one-key read of `prefix`
   * (so a role that may no longer read it is refused here): cheap enough to
   * ask every few seconds whether etcd's history went back under us.
   */
  async probe(prefix: string): Promise<{ revision: number; clusterId: string }> {
    return this.call(async ({ conn }) => {
      const res = await conn.kv.range({
        key: Buffer.from(prefix),
        range_end: prefixEnd(prefix),
        limit: 1,
        keys_only: true,
      });
      return { revision: Number(res.header.revision), clusterId: BigInt(res.header.cluster_id).toString(16) };
    });
  }

  /** Asks etcd for its status within `timeoutMs` (default read_timeout): true when it answered. */
  async ping(timeoutMs?: number): Promise<boolean> {
    try {
      const live = await this.open();
      const ms = Math.min(timeoutMs ?? live.settings.readTimeoutMs, live.settings.readTimeoutMs);
      await withDeadline(live.conn.maintenance.status(), ms, live.conn.endpoints);
      return true;
    } catch {
      return false;
    }
  }

  /** The cluster's id, hex, as etcdctl prints it: what identifies "the same etcd" across endpoint spellings. */
  async clusterId(): Promise<string> {
    return this.call(async ({ conn }) =>
      BigInt((await conn.maintenance.status()).header.cluster_id).toString(16),
    );
  }

  /**
   * What `link-etcd doctor` reports: the cluster as this client sees it.
   * Rejects like any call when etcd cannot be reached or refuses us.
   */
  async clusterStatus(): Promise<ClusterStatus> {
    return this.call(readClusterStatus);
  }

  /** Whether `path` has a value or anything under it. */
  async has(path: string): Promise<boolean> {
    const at = normalizePath(path);
    return this.call(({ conn }) => subtreeExists(conn, at));
  }

  /** Deletes `path` and everything under it, atomically. Rejects with {@link EtcdKeyError} when nothing was there. */
  async delete(path: string): Promise<void> {
    const at = normalizePath(path);
    const deleted = await this.call(({ conn }) => deleteSubtree(conn, at));
    if (deleted === 0) throw new EtcdKeyError(at);
  }

  /**
   * Every change under `prefix` (a key prefix, as given), in revision order,
   * none lost or repeated across reconnections; see {@link watchBatches}.
   * Completes on `close()`; unsubscribing cancels the etcd watch.
   */
  watch(prefix: string, options?: WatchOptions): Observable<EtcdChange> {
    return this.guard(this.rawBatches(prefix, options).pipe(mergeMap((batch) => batch.changes)), prefix);
  }

  private guard<T>(stream: Observable<T>, prefix: string): Observable<T> {
    return new GuardedObservable(stream, (error, callback) =>
      this.logger.error(
        { err: error, watch: prefix },
        `a subscriber's ${callback} callback threw; the stream goes on`,
      ),
    );
  }

  /**
   * The changes under `prefix` grouped as etcd delivered them (one batch per
   * transaction at most), each with the prefix's whole state after it; the
   * first batch is the state at subscription. What drivers and the sync
   * engine build on.
   */
  batches(prefix: string, options?: WatchOptions): Observable<WatchBatch> {
    return this.guard(this.rawBatches(prefix, options), prefix);
  }

  private rawBatches(prefix: string, options?: WatchOptions): Observable<WatchBatch> {
    if (this.closed) return new Observable((s) => s.error(new ClosedError()));
    return watchBatches(
      {
        connection: async () => {
          // Watches refuse the wrong cluster too, not only calls.
          const live = await this.open();
          await verifyLive(live);
          return live.conn;
        },
        pageSize: async () => (await this.open()).settings.pageSize,
        stats: this.watchStats,
        logger: this.logger,
        register: (subscriber) => {
          this.streams.add(subscriber);
          return () => this.streams.delete(subscriber);
        },
      },
      prefix,
      options,
    );
  }

  /** Completes every watch stream and closes the connection. The middleware cannot be used again. */
  async close(): Promise<void> {
    if (this.closed) return;
    // Closed first, so a call made while we wait cannot open a connection nobody will close.
    this.closed = true;
    const live = this.live;
    this.live = undefined;
    for (const s of [...this.streams]) s.complete();
    if (live) (await live.catch(() => undefined))?.conn.pool.close();
  }

  private open(): Promise<Live> {
    if (this.closed) return Promise.reject(new ClosedError());
    if (this.live === undefined) {
      const live = openLive({ ...this.options, logger: this.logger });
      this.live = live;
      // A failed open (bad settings) is not cached: fixing the file and calling again works.
      live.catch(() => {
        if (this.live === live) this.live = undefined;
      });
    }
    return this.live;
  }

  /** Runs one operation: connected, verified, under the pool bound and within read_timeout. */
  private async call<T>(work: (live: Live, deadline: number) => Promise<T>): Promise<T> {
    const live = await this.open();
    await verifyLive(live);
    const deadline = Date.now() + live.settings.readTimeoutMs;
    return bounded(live, () => work(live, deadline));
  }
}
