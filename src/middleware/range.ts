import type { KVClient } from 'etcd3';

/** One etcd key as we use it: text, with the revisions the sync engine compares. */
export interface KeyValue {
  readonly key: string;
  readonly value: string;
  readonly modRevision: number;
}

/** The smallest key greater than every key starting with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  // All 0xff: the range runs to the end of the keyspace.
  return Buffer.from([0]);
}

/** The two ranges of a subtree: `path` itself, and every key under `path/`. */
export function subtreeRanges(path: string, prefix: string): Array<{ key: Buffer; range_end?: Buffer }> {
  // One range from `path` to the end of `path/` would also span siblings such as `path-x`.
  return path === prefix
    ? [{ key: Buffer.from(prefix), range_end: prefixEnd(prefix) }]
    : [{ key: Buffer.from(path) }, { key: Buffer.from(prefix), range_end: prefixEnd(prefix) }];
}

/**
 * Reads a range page by page, every page at the revision of the first, so
 * the result is one consistent snapshot however large it is, and no single
 * response has to hold all of it.
 */
export async function readRange(
  kv: KVClient,
  range: { key: Buffer; range_end?: Buffer },
  options: {
    pageSize: number;
    revision?: number;
    keysOnly?: boolean;
    /** Takes each key as it arrives instead of collecting them (a watch seeding 100,000 keys keeps one copy, not two). */
    each?: (kv: KeyValue) => void;
  },
): Promise<{ revision: number; kvs: KeyValue[] }> {
  const kvs: KeyValue[] = [];
  const take = options.each ?? ((item: KeyValue) => kvs.push(item));
  let cursor = range.key;
  let revision = options.revision;
  for (;;) {
    const res = await kv.range({
      key: cursor,
      ...(range.range_end === undefined ? {} : { range_end: range.range_end }),
      limit: options.pageSize,
      revision: revision ?? 0,
      keys_only: options.keysOnly ?? false,
    });
    revision ??= Number(res.header.revision);
    for (const item of res.kvs) {
      take({
        key: item.key.toString(),
        value: item.value.toString(),
        modRevision: Number(item.mod_revision),
      });
    }
    const last = res.kvs.at(-1);
    if (!res.more || last === undefined) return { revision, kvs };
    cursor = Buffer.concat([last.key, Buffer.from([0])]);
  }
}
