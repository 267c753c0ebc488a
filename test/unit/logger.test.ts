import { describe, expect, it } from 'vitest';
import { changeLines } from '../../src/cli/logger.js';

describe('pretty change lines', () => {
  const landed = (msg: string, changes: unknown[], keys = changes.length) => ({
    msg,
    file: 'shop/database.conf',
    keys,
    changes,
  });

  it.each([
    [
      'a put from etcd',
      landed('written to the file', [
        ['put', '/shop/database.conf/POSTGRES/pool_size', 'changed in etcd', '10', '20'],
      ]),
      'shop/database.conf [POSTGRES] pool_size: 10 -> 20 (etcd -> file)',
    ],
    [
      'a new key from a file',
      landed('written to etcd', [
        ['put', '/shop/database.conf/POSTGRES/host', 'new in the file', null, 'db'],
      ]),
      'shop/database.conf [POSTGRES] host: (none) -> db (file -> etcd)',
    ],
    [
      'a deletion',
      landed('written to etcd', [
        ['delete', '/shop/database.conf/POSTGRES/host', 'deleted in the file', 'db', null],
      ]),
      'shop/database.conf [POSTGRES] host: db -> (deleted) (file -> etcd)',
    ],
    [
      'a masked secret (the engine masks before logging)',
      landed('written to the file', [
        ['put', '/shop/database.conf/POSTGRES/password', 'changed in etcd', '***', '***'],
      ]),
      'shop/database.conf [POSTGRES] password: *** -> *** (etcd -> file)',
    ],
    [
      'more keys than the line lists',
      landed('written to the file', [['put', '/shop/database.conf/S/a', 'new in etcd', null, '1']], 12),
      'shop/database.conf [S] a: (none) -> 1 (etcd -> file)\n  ... and 11 more keys of shop/database.conf',
    ],
  ])('%s', (_name, log, line) => {
    expect(changeLines(log)).toBe(line);
  });

  it('leaves every other line to its message', () => {
    expect(changeLines({ msg: 'in sync; following both sides', file: 'a.conf' })).toBeUndefined();
  });
});
