import { describe, expect, it } from 'vitest';
import { diffSnapshot } from '../../src/middleware/watch.js';

describe('resync difference after a compacted watch', () => {
  const known = new Map([
    ['/c/a', { value: '1', modRevision: 2 }],
    ['/c/b', { value: '1', modRevision: 2 }],
    ['/c/x', { value: '1', modRevision: 2 }],
  ]);

  it('is empty when nothing changed', () => {
    const same = [...known].map(([key, { value }]) => ({ key, value, modRevision: 2 }));
    expect(diffSnapshot(known, same, 9)).toEqual([]);
  });

  it('emits changed and new keys as puts in revision order, then vanished keys as deletes at the read revision', () => {
    const current = [
      { key: '/c/a', value: '2', modRevision: 7 },
      { key: '/c/new', value: 'n', modRevision: 5 },
      { key: '/c/x', value: '1', modRevision: 2 },
    ];
    expect(diffSnapshot(known, current, 9)).toEqual([
      { type: 'put', key: '/c/new', value: 'n', revision: 5, resync: true },
      { type: 'put', key: '/c/a', value: '2', prevValue: '1', revision: 7, resync: true },
      { type: 'delete', key: '/c/b', prevValue: '1', revision: 9, resync: true },
    ]);
  });
});
