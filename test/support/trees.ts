import fc from 'fast-check';
import type { Tree } from '../../src/middleware/tree.js';

/**
 * Trees the dict protocol can represent: no empty containers (etcd has no
 * directories) and no dict whose names are all numbers (those read back as lists).
 */
export const treeArb: fc.Arbitrary<Tree> = fc.letrec<{ tree: Tree; dict: Tree; list: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.string({ unit: 'binary' }),
    tie('dict'),
    tie('list'),
  ),
  dict: fc.dictionary(
    fc
      .string({ unit: 'grapheme', minLength: 1, maxLength: 8 })
      .filter((k) => !k.includes('/') && !/^\d+$/.test(k)),
    tie('tree'),
    { minKeys: 1, maxKeys: 4, noNullPrototype: true },
  ),
  list: fc.array(tie('tree'), { minLength: 1, maxLength: 4 }),
})).tree;
