import { CompareResult, CompareTarget, type IRequestOp } from 'etcd3';
import { EtcdRequestError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Connection } from './connection.js';
import type { Live } from './live.js';
import { prefixEnd, subtreeRanges } from './range.js';
import { childPrefix } from './tree.js';
import { readSubtree } from './tree-reads.js';

/**
 * Bytes of keys and values in one transaction of a split write: under etcd's
 * default --max-request-bytes (1.5 MiB), with room for the request's framing.
 */
export const TXN_BYTES = 1024 * 1024;

/** Roughly what an operation weighs in a request: its key, its value, a little framing. */
function opBytes(op: IRequestOp): number {
  const put = op.request_put;
  if (put) return (put.key?.length ?? 0) + (put.value?.length ?? 0) + 16;
  return (op.request_delete_range?.key?.length ?? 0) + 16;
}

const totalBytes = (ops: readonly IRequestOp[]): number => ops.reduce((n, op) => n + opBytes(op), 0);

/** How many times `set` re-reads and retries when another writer changes the subtree under it. */
const SET_ATTEMPTS = 5;

export interface ConditionalWrite {
  readonly key: string;
  readonly value: string | undefined;
  readonly expectRevision: number;
}

/** Behind `set`, which documents it. */
export async function replaceSubtree(
  { conn, settings }: Live,
  logger: Logger,
  at: string,
  entries: ReadonlyMap<string, string>,
  deadline: number,
): Promise<void> {
  for (let attempt = 1; attempt <= SET_ATTEMPTS && Date.now() < deadline; attempt++) {
    const current = await readSubtree(conn, settings, at, true);
    const stale = current.kvs.filter((kv) => !entries.has(kv.key)).map((kv) => kv.key);
    const ops: IRequestOp[] = [
      ...stale.map((key) => ({ request_delete_range: { key: Buffer.from(key) } })),
      ...[...entries].map(([key, v]) => ({
        request_put: { key: Buffer.from(key), value: Buffer.from(v) },
      })),
    ];
    if (ops.length === 0) return;
    if (ops.length > settings.maxTxnOps || totalBytes(ops) > TXN_BYTES) {
      await writeInChunks(
        conn,
        logger,
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
}

/** Behind `update`, which documents it. */
export async function mergeIntoSubtree(
  { conn, settings }: Live,
  logger: Logger,
  entries: ReadonlyMap<string, string>,
): Promise<void> {
  const puts: IRequestOp[] = [...entries].map(([key, v]) => ({
    request_put: { key: Buffer.from(key), value: Buffer.from(v) },
  }));
  if (puts.length > settings.maxTxnOps || totalBytes(puts) > TXN_BYTES)
    await writeInChunks(conn, logger, settings.maxTxnOps, puts, []);
  else await conn.kv.txn({ success: puts });
}

/** Behind `writeIfUnchanged`, which documents it. */
export async function writeIfUnchanged(
  { conn, settings }: Live,
  writes: ReadonlyArray<ConditionalWrite>,
): Promise<number | undefined> {
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
}

/** Behind `delete`: how many keys went, so it can tell that nothing was there. */
export async function deleteSubtree(conn: Connection, at: string): Promise<number> {
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
}

async function writeInChunks(
  conn: Connection,
  logger: Logger,
  size: number,
  puts: IRequestOp[],
  deletes: IRequestOp[],
): Promise<void> {
  logger.warn(
    {
      operations: puts.length + deletes.length,
      bytes: totalBytes(puts),
      maxTxnOps: size,
      txnBytes: TXN_BYTES,
    },
    'tree larger than one transaction (max_txn_ops, or 1 MiB of keys and values): writing it in several transactions (not atomic)',
  );
  for (const ops of [puts, deletes]) {
    let chunk: IRequestOp[] = [];
    let bytes = 0;
    for (const op of ops) {
      const weight = opBytes(op);
      if (chunk.length > 0 && (chunk.length >= size || bytes + weight > TXN_BYTES)) {
        await conn.kv.txn({ success: chunk });
        chunk = [];
        bytes = 0;
      }
      chunk.push(op);
      bytes += weight;
    }
    if (chunk.length > 0) await conn.kv.txn({ success: chunk });
  }
}
