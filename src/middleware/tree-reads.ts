import type { Connection } from './connection.js';
import { type KeyValue, prefixEnd, readRange, subtreeRanges } from './range.js';
import type { EtcdSettings } from './settings.js';
import { childPrefix } from './tree.js';

/** `path` and the keys under `path/`, read at one revision. */
export async function readSubtree(conn: Connection, settings: EtcdSettings, at: string, keysOnly: boolean) {
  let revision: number | undefined;
  const kvs: KeyValue[] = [];
  for (const range of subtreeRanges(at, childPrefix(at))) {
    const snapshot = await readRange(conn.kv, range, { pageSize: settings.pageSize, keysOnly, revision });
    revision ??= snapshot.revision;
    kvs.push(...snapshot.kvs);
  }
  return { revision: revision as number, kvs };
}

/** Behind `has`: counts only, so no value crosses the wire. */
export async function subtreeExists(conn: Connection, at: string): Promise<boolean> {
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
}
