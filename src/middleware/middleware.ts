import { CompareResult, CompareTarget, type IRequestOp } from 'etcd3';
import { mergeMap, Observable, type Subscriber } from 'rxjs';
import { ClosedError, ClusterMismatchError, EtcdKeyError, EtcdRequestError } from '../errors.js';
import { defaultLogger, type Logger } from '../log.js';
import { type Connection, openConnection, toLinkError, withDeadline } from './connection.js';
import { Gate } from './gate.js';
import { GuardedObservable } from './guarded.js';
import { type KeyValue, prefixEnd, readRange, subtreeRanges } from './range.js';
import {
  type ConnectionOptions,
  type EtcdSettings,
  loadSettings,
  type SnakeCaseConnectionOptions,
  withSettings,
} from './settings.js';
import { discoverBySrv, type SrvResolver } from './srv.js';
import { loadTlsMaterial } from './tls.js';
import { buildTree, childPrefix, flattenTree, normalizePath, type Tree, type TreeInput } from './tree.js';
import {
  type EtcdChange,
  newWatchStats,
  type WatchBatch,
  type WatchOptions,
  type WatchStats,
  watchBatches,
} from './watch.js';

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

/** The cluster as `clusterStatus()` sees it. */
export interface ClusterStatus {
  readonly endpoints: readonly string[];
  /** Hex, as etcdctl prints it. */
  readonly clusterId: string;
  readonly version: string;
  /** Member id of the leader, hex; `0` when there is none. */
  readonly leader: string;
  readonly revision: number;
  readonly members: ReadonlyArray<{
    readonly id: string;
    readonly name: string;
    readonly clientURLs: readonly string[];
    readonly leader: boolean;
    readonly learner: boolean;
  }>;
  /** `none`, or `user <name>`: credentials in use (never the password). */
  readonly auth: string;
  readonly tls: boolean;
  /** Round trip of one status call. */
  readonly latencyMs: number;
}

/** How many times `set` re-reads and retries when another writer changes the subtree under it. */
const SET_ATTEMPTS = 5;

interface Live {
  readonly settings: EtcdSettings;
  readonly conn: Connection;
  readonly gate: Gate;
  /** Resolves once the cluster answered and matched `expected_cluster_id`. */
  verified?: Promise<void>;
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
    await this.verify(live);
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
    await this.call(async ({ conn, settings }, deadline) => {
      for (let attempt = 1; attempt <= SET_ATTEMPTS && Date.now() < deadline; attempt++) {
        const current = await this.readSubtree(conn, settings, at, true);
        const stale = current.kvs.filter((kv) => !entries.has(kv.key)).map((kv) => kv.key);
        const ops: IRequestOp[] = [
          ...stale.map((key) => ({ request_delete_range: { key: Buffer.from(key) } })),
          ...[...entries].map(([key, v]) => ({
            request_put: { key: Buffer.from(key), value: Buffer.from(v) },
          })),
        ];
        if (ops.length === 0) return;
        if (ops.length > settings.maxTxnOps) {
          await this.writeInChunks(
            conn,
            settings.maxTxnOps,
            ops.slice(stale.length),
            ops.slice(0, stale.length),
          );
          return;
        }
        const res = await conn.kv.txn({
          // Nothing in the subtree changed since we read it; otherwise read again.
          compare: subtreeRanges(at, childPrefix(at)).map((range) => ({
            ...range,
            target: CompareTarget.Mod,
            result: CompareResult.Less,
            mod_revision: current.revision + 1,
          })),
          success: ops,
        });
        if (res.succeeded) return;
      }
      throw new EtcdRequestError(
        `\`${at}\` kept changing while link-etcd tried to replace it: another writer is busy there; retry`,
      );
    });
  }

  /**
   * Writes the keys of `value` under `path` and leaves every other key
   * alone: a merge, where `set` replaces. One transaction up to
   * `max_txn_ops` keys, several (not atomic) past it.
   */
  async update(path: string, value: TreeInput): Promise<void> {
    const entries = flattenTree(normalizePath(path), value);
    const puts: IRequestOp[] = [...entries].map(([key, v]) => ({
      request_put: { key: Buffer.from(key), value: Buffer.from(v) },
    }));
    if (puts.length === 0) return;
    await this.call(async ({ conn, settings }) => {
      if (puts.length > settings.maxTxnOps) await this.writeInChunks(conn, settings.maxTxnOps, puts, []);
      else await conn.kv.txn({ success: puts });
    });
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
    return this.call(async ({ conn, settings }) => {
      if (writes.length > settings.maxTxnOps) {
        throw new EtcdRequestError(
          `${writes.length} keys in one transaction: at most max_txn_ops = ${settings.maxTxnOps}`,
        );
      }
      const res = await conn.kv.txn({
        compare: writes.map((w) => ({
          key: Buffer.from(w.key),
          target: CompareTarget.Mod,
          result: CompareResult.Equal,
          mod_revision: w.expectRevision,
        })),
        success: writes.map((w) =>
          w.value === undefined
            ? { request_delete_range: { key: Buffer.from(w.key) } }
            : { request_put: { key: Buffer.from(w.key), value: Buffer.from(w.value) } },
        ),
      });
      return res.succeeded ? Number(res.header.revision) : undefined;
    });
  }

  /** The value at `path`: its text, or the tree under it. Rejects with {@link EtcdKeyError} when nothing is there. */
  async get(path: string): Promise<Tree> {
    const at = normalizePath(path);
    const tree = await this.call(async ({ conn, settings }) => {
      const { kvs } = await this.readSubtree(conn, settings, at, false);
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
    return this.call(async ({ conn, settings }) => {
      const started = performance.now();
      const status = await conn.maintenance.status();
      const latencyMs = performance.now() - started;
      const members = await conn.cluster.memberList({});
      const leader = status.leader;
      return {
        endpoints: conn.endpoints,
        clusterId: BigInt(status.header.cluster_id).toString(16),
        version: status.version,
        leader: BigInt(leader).toString(16),
        revision: Number(status.header.revision),
        members: members.members.map((m) => ({
          id: BigInt(m.ID).toString(16),
          name: m.name,
          clientURLs: m.clientURLs,
          leader: m.ID === leader,
          learner: m.isLearner,
        })),
        auth: settings.username === undefined ? 'none' : `user ${settings.username}`,
        tls: settings.protocol === 'https',
        latencyMs: Math.round(latencyMs * 100) / 100,
      };
    });
  }

  /** Whether `path` has a value or anything under it. */
  async has(path: string): Promise<boolean> {
    const at = normalizePath(path);
    return this.call(async ({ conn }) => {
      const res = await conn.kv.txn({
        success: [
          { request_range: { key: Buffer.from(at), count_only: true } },
          {
            request_range: {
              key: Buffer.from(childPrefix(at)),
              range_end: prefixEnd(childPrefix(at)),
              count_only: true,
            },
          },
        ],
      });
      return res.responses.some((r) => Number(r.response_range.count) > 0);
    });
  }

  /** Deletes `path` and everything under it, atomically. Rejects with {@link EtcdKeyError} when nothing was there. */
  async delete(path: string): Promise<void> {
    const at = normalizePath(path);
    const deleted = await this.call(async ({ conn }) => {
      // Two ranges in one transaction: one range from `path` to the end of `path/` would take siblings like `path-x`.
      const res = await conn.kv.txn({
        success: [
          { request_delete_range: { key: Buffer.from(at) } },
          {
            request_delete_range: {
              key: Buffer.from(childPrefix(at)),
              range_end: prefixEnd(childPrefix(at)),
            },
          },
        ],
      });
      return res.responses.reduce((n, r) => n + Number(r.response_delete_range.deleted), 0);
    });
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
          await this.verify(live);
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
      const live = this.build();
      this.live = live;
      // A failed open (bad settings) is not cached: fixing the file and calling again works.
      live.catch(() => {
        if (this.live === live) this.live = undefined;
      });
    }
    return this.live;
  }

  private async build(): Promise<Live> {
    const { endpoints, ...options } = this.options;
    const urls = typeof endpoints === 'string' ? endpoints.split(',') : endpoints;
    const fromUrls =
      urls === undefined
        ? {}
        : {
            host: urls.map((u) => u.trim()).filter((u) => u !== ''),
            protocol: urls.some((u) => u.trim().startsWith('https://')) ? 'https' : 'http',
          };
    let settings = await loadSettings({ confDir: options.confDir, options: { ...options, ...fromUrls } });
    let hosts = settings.hosts;
    if (settings.srvDomain !== undefined && urls === undefined) {
      const found = await discoverBySrv(settings.srvDomain, settings.source, this.options.srvResolver);
      hosts = found.hosts;
      if (found.secure) settings = withSettings(settings, { protocol: 'https' });
    }
    const tls = await loadTlsMaterial(settings);
    const conn = openConnection(settings, hosts, tls);
    return { settings, conn, gate: new Gate(settings.perHostPoolSize * hosts.length) };
  }

  private verify(live: Live): Promise<void> {
    live.verified ??= (async () => {
      const status = await this.bounded(live, () => live.conn.maintenance.status());
      const expected = live.settings.expectedClusterId;
      if (expected === undefined) return;
      const actual = BigInt(status.header.cluster_id).toString(16);
      if (actual !== expected) throw new ClusterMismatchError(expected, actual, live.conn.endpoints);
    })();
    // A failed check is retried on the next call: etcd may come up, or the file be fixed.
    const check = live.verified;
    check.catch(() => {
      if (live.verified === check) live.verified = undefined;
    });
    return check;
  }

  /** Runs one operation: connected, verified, under the pool bound and within read_timeout. */
  private async call<T>(work: (live: Live, deadline: number) => Promise<T>): Promise<T> {
    const live = await this.open();
    await this.verify(live);
    const deadline = Date.now() + live.settings.readTimeoutMs;
    return this.bounded(live, () => work(live, deadline));
  }

  private bounded<T>(live: Live, work: () => Promise<T>): Promise<T> {
    const { conn, settings } = live;
    return live.gate
      .run(() => withDeadline(work(), settings.readTimeoutMs, conn.endpoints))
      .catch((error: unknown) => {
        throw toLinkError(error, conn.endpoints);
      });
  }

  /** `path` and the keys under `path/`, read at one revision. */
  private async readSubtree(conn: Connection, settings: EtcdSettings, at: string, keysOnly: boolean) {
    let revision: number | undefined;
    const kvs: KeyValue[] = [];
    for (const range of subtreeRanges(at, childPrefix(at))) {
      const snapshot = await readRange(conn.kv, range, { pageSize: settings.pageSize, keysOnly, revision });
      revision ??= snapshot.revision;
      kvs.push(...snapshot.kvs);
    }
    return { revision: revision as number, kvs };
  }

  private async writeInChunks(
    conn: Connection,
    size: number,
    puts: IRequestOp[],
    deletes: IRequestOp[],
  ): Promise<void> {
    this.logger.warn(
      { operations: puts.length + deletes.length, maxTxnOps: size },
      'tree larger than max_txn_ops: writing it in several transactions (not atomic)',
    );
    for (const ops of [puts, deletes]) {
      for (let i = 0; i < ops.length; i += size) await conn.kv.txn({ success: ops.slice(i, i + size) });
    }
  }
}
