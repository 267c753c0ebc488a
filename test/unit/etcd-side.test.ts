import { describe, expect, it } from 'vitest';
import type { EtcdMiddleware } from '../../src/middleware/middleware.js';
import type { StateEntry } from '../../src/middleware/watch.js';
import { EtcdSide } from '../../src/sync/etcd-side.js';

const e = (value: string, modRevision: number): StateEntry => ({ value, modRevision });
const fileOf = (key: string) => key.split('/').slice(1, -2).join('/') || undefined;

/** An EtcdSide fed a watch state up to revision 10, without etcd: divergence() is pure over it. */
function sideAt(state: Map<string, StateEntry>, revision = 10): EtcdSide {
  const side = new EtcdSide(() => ({}) as EtcdMiddleware, fileOf);
  side.take({ initial: true, state, revision, changes: [], resync: false } as never);
  return side;
}

describe('EtcdSide.divergence: the watch mirror against a fresh read of etcd', () => {
  const mirror = () =>
    new Map([
      ['/a.conf/S/k', e('1', 5)],
      ['/b.conf/S/k', e('2', 7)],
    ]);

  it.each([
    ['nothing differs', mirror(), 10, []],
    [
      'etcd holds another value the watch never delivered',
      new Map([...mirror(), ['/a.conf/S/k', e('9', 8)]]),
      10,
      ['/a.conf/S/k'],
    ],
    [
      'etcd holds a key the watch never delivered',
      new Map([...mirror(), ['/c.conf/S/k', e('3', 9)]]),
      10,
      ['/c.conf/S/k'],
    ],
    ['etcd lost a key the mirror still has', new Map([['/a.conf/S/k', e('1', 5)]]), 10, ['/b.conf/S/k']],
    [
      'a change after the watch revision is only not delivered yet',
      new Map([...mirror(), ['/c.conf/S/k', e('3', 12)]]),
      12,
      [],
    ],
    [
      'a key missing from a read newer than the watch may be a deletion in flight',
      new Map([['/a.conf/S/k', e('1', 5)]]),
      12,
      [],
    ],
    [
      'a key that maps to no file is not mirrored, so not compared',
      new Map([...mirror(), ['/x/S', e('3', 9)]]),
      10,
      [],
    ],
  ] as const)('%s', (_name, snapshot, revision, differ) => {
    expect(sideAt(mirror()).divergence(snapshot as Map<string, StateEntry>, revision)).toEqual(differ);
  });
});
