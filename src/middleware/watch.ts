import type { IWatchRequest, IWatchResponse } from 'etcd3';
import type { Logger } from 'pino';
import { Observable, type Subscriber } from 'rxjs';
import { EtcdAuthError, isRetryable } from '../errors.js';
import { type Connection, classifyReason, toLinkError } from './connection.js';
import { type KeyValue, prefixEnd, readRange } from './range.js';

/** One change under a watched prefix. */
export interface EtcdChange {
  readonly type: 'put' | 'delete';
  readonly key: string;
  /** The new value of a put. */
  readonly value?: string;
  /** The value before the change, when etcd still knew it. */
  readonly prevValue?: string;
  /** The etcd revision of the change. For a delete found by a resync: the revision of the re-read. */
  readonly revision: number;
  /** Set when the change was found by re-reading the prefix after a gap (compaction), not seen as an event. */
  readonly resync?: true;
}

export interface WatchOptions {
  /**
   * Emit changes made from this revision on. Default: changes after the
   * subscription. When etcd has compacted it away, the stream re-reads the
   * prefix and emits every key as a put (`resync: true`).
   */
  readonly startRevision?: number;
}

/** A key's value and the revision that wrote it. */
export interface StateEntry {
  readonly value: string;
  readonly modRevision: number;
}

/**
 * What one etcd watch response (or one resync) changed, with the prefix's
 * whole state after it. `state` is a live view: copy it to keep it past the
 * next batch.
 */
export interface WatchBatch {
  readonly changes: readonly EtcdChange[];
  readonly state: ReadonlyMap<string, StateEntry>;
  /** The revision up to which `state` holds every change. */
  readonly revision: number;
  /** The first batch: the state at subscription (or at `startRevision - 1`), with no changes. */
  readonly initial: boolean;
}

/** What a watch went through, for metrics and health. */
export interface WatchStats {
  /** Streams re-established after a failure. */
  reconnects: number;
  /** Re-reads after a compaction. */
  resyncs: number;
  /** The newest etcd revision any response carried. */
  headerRevision: number;
  /** When a response last arrived (ms since epoch): a stalled watch shows here. */
  lastResponseAt: number;
  /** Whether a stream is established now. */
  connected: boolean;
}

export function newWatchStats(): WatchStats {
  return { reconnects: 0, resyncs: 0, headerRevision: 0, lastResponseAt: 0, connected: false };
}

export interface WatchContext {
  readonly connection: () => Promise<Connection>;
  readonly logger: Logger;
  readonly pageSize: () => Promise<number>;
  readonly stats?: WatchStats;
  /** Completes every stream on close(); returns the unregister function. */
  readonly register: (subscriber: Subscriber<WatchBatch>) => () => void;
}

/** etcd answers a create request in milliseconds; silence this long means a stuck stream (etcd3 issue: create() can hang). */
const CREATE_TIMEOUT_MS = 5_000;
const BACKOFF_MIN_MS = 50;
const STABLE_MS = 10_000;

/** etcd3's pool refreshes its token only on unary calls; a watch stream must ask for it. */
function refreshToken(conn: Connection): void {
  (
    conn.pool as unknown as { authenticator?: { invalidateMetadata?: () => void } }
  ).authenticator?.invalidateMetadata?.();
}
const BACKOFF_MAX_MS = 2_000;

/** A duplex gRPC stream, as etcd3's pool hands it out. */
interface WatchStream {
  write(req: IWatchRequest): void;
  on(event: 'data', fn: (res: IWatchResponse) => void): WatchStream;
  on(event: 'error', fn: (err: Error) => void): WatchStream;
  on(event: 'end', fn: () => void): WatchStream;
  cancel(): void;
  end(): void;
}

/**
 * The differences between what the subscriber has seen (`known`) and the
 * prefix now (`current`, read at `revision`), as changes in revision order.
 */
export function diffSnapshot(
  known: ReadonlyMap<string, StateEntry>,
  current: readonly KeyValue[],
  revision: number,
): EtcdChange[] {
  const changes: EtcdChange[] = [];
  const seen = new Set<string>();
  for (const kv of current) {
    seen.add(kv.key);
    const prev = known.get(kv.key)?.value;
    if (prev === kv.value) continue;
    changes.push({
      type: 'put',
      key: kv.key,
      value: kv.value,
      ...(prev === undefined ? {} : { prevValue: prev }),
      revision: kv.modRevision,
      resync: true,
    });
  }
  changes.sort((a, b) => a.revision - b.revision);
  for (const [key, prev] of known) {
    if (!seen.has(key)) changes.push({ type: 'delete', key, prevValue: prev.value, revision, resync: true });
  }
  return changes;
}

/**
 * A gapless watch of `prefix`. Unlike etcd3's Watcher, it resumes from the
 * revision of the last event it delivered (never from a response header,
 * which runs ahead of the events during catch-up), it never trusts progress
 * notifications (etcd < 3.4.25 could send them to unsynced watchers), and
 * when etcd has compacted the revision it needs it re-reads the prefix and
 * emits the difference. One gRPC stream per subscription keeps one stuck or
 * cancelled watch from affecting another.
 */
export function watchBatches(
  ctx: WatchContext,
  prefix: string,
  options: WatchOptions = {},
): Observable<WatchBatch> {
  return new Observable<WatchBatch>((subscriber) => {
    const log = ctx.logger.child({ watch: prefix });
    const rangeEnd = prefixEnd(prefix);
    const range = { key: Buffer.from(prefix), range_end: rangeEnd };
    /** What the subscriber has seen of the prefix, to emit the difference after a gap. */
    let known = new Map<string, StateEntry>();
    /** The revision up to which the subscriber has every change. */
    let lastRevision = 0;
    let stream: WatchStream | undefined;
    let epoch = 0;
    let closed = false;
    let backoff = BACKOFF_MIN_MS;
    let timer: NodeJS.Timeout | undefined;
    const unregister = ctx.register(subscriber);

    const emit = (changes: readonly EtcdChange[], initial = false): void => {
      if (!closed && (initial || changes.length > 0)) {
        subscriber.next({ changes, state: known, revision: lastRevision, initial });
      }
    };

    const later = (what: string, fn: () => void, error?: unknown): void => {
      if (closed) return;
      if (ctx.stats) {
        ctx.stats.connected = false;
        ctx.stats.reconnects++;
      }
      const delay = backoff + Math.floor(Math.random() * backoff * 0.2);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      log.warn({ err: error, retryInMs: delay }, `watch ${what} failed; retrying`);
      clearTimeout(timer);
      timer = setTimeout(fn, delay);
    };

    const dropStream = (): void => {
      epoch++;
      const old = stream;
      stream = undefined;
      if (old) {
        try {
          old.cancel();
        } catch {
          // Already gone: nothing to cancel.
        }
      }
    };

    /** Re-reads the prefix and emits what changed since `known`; `initial` seeds without emitting. */
    const resync = async (mode: 'initial' | 'start' | 'gap'): Promise<void> => {
      try {
        const revision = mode === 'start' ? (options.startRevision as number) - 1 : undefined;
        if (revision === 0) {
          // Revision 0 is the empty keyspace: everything from revision 1 on arrives as events.
          lastRevision = 0;
          emit([], true);
          connect();
          return;
        }
        const conn = await ctx.connection();
        if (mode === 'gap') {
          const snapshot = await readRange(conn.kv, range, { pageSize: await ctx.pageSize(), revision });
          if (closed) return;
          if (ctx.stats) ctx.stats.resyncs++;
          log.warn(
            { from: lastRevision + 1, to: snapshot.revision },
            'watch revision compacted: re-read the prefix',
          );
          const changes = diffSnapshot(known, snapshot.kvs, snapshot.revision);
          for (const change of changes) {
            if (change.type === 'put') {
              known.set(change.key, { value: change.value as string, modRevision: change.revision });
            } else known.delete(change.key);
          }
          lastRevision = snapshot.revision;
          emit(changes);
        } else {
          const seeded = new Map<string, StateEntry>();
          const snapshot = await readRange(conn.kv, range, {
            pageSize: await ctx.pageSize(),
            revision,
            each: (kv) => seeded.set(kv.key, { value: kv.value, modRevision: kv.modRevision }),
          });
          if (closed) return;
          known = seeded;
          lastRevision = snapshot.revision;
          emit([], true);
        }
        connect();
      } catch (error) {
        const failure = toLinkError(error, []);
        if (mode === 'start' && failure.code === 'ETCD_COMPACTED') {
          // The history asked for is gone: the subscriber knows nothing, so every key is a change.
          known = new Map();
          lastRevision = (options.startRevision as number) - 1;
          emit([], true);
          void resync('gap');
          return;
        }
        // No retry fixes wrong settings, the wrong cluster, refused credentials or a revision from the future.
        if (!isRetryable(failure)) return subscriber.error(failure);
        later('read', () => void resync(mode), error);
      }
    };

    const onResponse = (res: IWatchResponse, myEpoch: number, created: () => void): void => {
      if (myEpoch !== epoch || closed) return;
      if (ctx.stats) {
        ctx.stats.lastResponseAt = Date.now();
        ctx.stats.headerRevision = Math.max(ctx.stats.headerRevision, Number(res.header?.revision ?? 0));
        if (res.created && !res.canceled) ctx.stats.connected = true;
      }
      if (res.created) created();
      if (res.canceled) {
        dropStream();
        const compacted = Number(res.compact_revision);
        if (compacted > 0) {
          void resync('gap');
          return;
        }
        const reason = res.cancel_reason || 'cancelled by etcd';
        const failure = classifyReason(reason);
        // etcd cancels a stream whose auth token expired (after an etcd restart, say): get a new token, not an error.
        if (failure.code === 'ETCD_TOKEN_EXPIRED') {
          void ctx.connection().then(
            (conn) => refreshToken(conn),
            () => undefined,
          );
        } else if (failure.code === 'ETCD_AUTH') {
          subscriber.error(new EtcdAuthError(`watch on \`${prefix}\` cancelled: ${reason}`));
          return;
        }
        later('stream', connect, new Error(reason));
        return;
      }
      // A repeated response (possible after a reconnect race) carries revisions we already delivered.
      const floor = lastRevision;
      const changes: EtcdChange[] = [];
      for (const ev of res.events) {
        const revision = Number(ev.kv.mod_revision);
        if (revision <= floor) continue;
        const key = ev.kv.key.toString();
        const prevValue = ev.prev_kv ? ev.prev_kv.value.toString() : known.get(key)?.value;
        if (ev.type === 'Put') {
          const value = ev.kv.value.toString();
          known.set(key, { value, modRevision: revision });
          changes.push({
            type: 'put',
            key,
            value,
            ...(prevValue === undefined ? {} : { prevValue }),
            revision,
          });
        } else {
          known.delete(key);
          changes.push({ type: 'delete', key, ...(prevValue === undefined ? {} : { prevValue }), revision });
        }
        lastRevision = Math.max(lastRevision, revision);
      }
      emit(changes);
    };

    const connect = (): void => {
      if (closed) return;
      dropStream();
      const myEpoch = epoch;
      void ctx
        .connection()
        .then((conn) =>
          conn.pool.withConnection('Watch', ({ client, metadata, resource }) => {
            // `hasleader`: a member cut off from its leader fails the stream instead of going silent.
            const md = metadata.clone();
            md.set('hasleader', 'true');
            const s = (client as unknown as { watch(md: unknown, opts: object): WatchStream }).watch(md, {});
            // Until the real handlers are on, a cancelled stream's 'error' must not be an uncaught exception.
            s.on('error', () => undefined);
            return { s, resource, conn };
          }),
        )
        .then(({ s, resource, conn }) => {
          const pool = conn.pool;
          if (myEpoch !== epoch || closed) {
            s.cancel();
            return;
          }
          stream = s;
          const createTimer = setTimeout(() => {
            if (myEpoch !== epoch) return;
            dropStream();
            later('creation (no answer in 5 s)', connect);
          }, CREATE_TIMEOUT_MS);
          let stable: NodeJS.Timeout | undefined;
          const created = () => {
            clearTimeout(createTimer);
            // Reset the backoff only once the stream has proved itself: etcd confirms a watch
            // before sending a response that may then fail (too large, token expired).
            stable = setTimeout(() => {
              backoff = BACKOFF_MIN_MS;
            }, STABLE_MS);
            stable.unref();
          };
          s.on('data', (res) => onResponse(res, myEpoch, created));
          s.on('error', (err) => {
            clearTimeout(createTimer);
            clearTimeout(stable);
            if (myEpoch !== epoch || closed) return;
            if (classifyReason(err.message).code === 'ETCD_TOKEN_EXPIRED') refreshToken(conn);
            pool.markFailed(resource, err);
            dropStream();
            later('stream', connect, err);
          });
          s.on('end', () => {
            clearTimeout(createTimer);
            clearTimeout(stable);
            if (myEpoch !== epoch || closed) return;
            dropStream();
            later('stream', connect, new Error('stream ended by the server'));
          });
          s.write({
            create_request: {
              key: range.key,
              range_end: rangeEnd,
              start_revision: lastRevision + 1,
              prev_kv: true,
            },
          });
        })
        .catch((error: unknown) => {
          if (myEpoch !== epoch) return;
          const failure = toLinkError(error, []);
          if (!isRetryable(failure)) {
            subscriber.error(failure);
            return;
          }
          later('connection', connect, error);
        });
    };

    if (options.startRevision !== undefined && options.startRevision > 0) void resync('start');
    else void resync('initial');

    return () => {
      closed = true;
      clearTimeout(timer);
      dropStream();
      unregister();
    };
  });
}
