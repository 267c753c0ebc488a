import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildTree, childPrefix, flattenTree, normalizePath } from '../../src/middleware/tree.js';
import { treeArb } from '../support/trees.js';

describe('tree codec', () => {
  it('writes the seed example as numbered children', () => {
    expect([...flattenTree('/collection', { subcollection: ['item1', 'item2'] })]).toEqual([
      ['/collection/subcollection/1', 'item1'],
      ['/collection/subcollection/2', 'item2'],
    ]);
  });

  it('writes scalars as their text', () => {
    expect(Object.fromEntries(flattenTree('/a', { n: 3, b: true, big: 10n }))).toEqual({
      '/a/n': '3',
      '/a/b': 'true',
      '/a/big': '10',
    });
  });

  it('refuses null with the path in the message', () => {
    expect(() => flattenTree('/a', { x: null as unknown as string })).toThrow(/null at `\/a\/x`/);
  });

  it('reads children named exactly 1..n as a list, anything else as a dict', () => {
    expect(
      buildTree('/p', [
        ['/p/2', 'b'],
        ['/p/1', 'a'],
      ]),
    ).toEqual(['a', 'b']);
    expect(
      buildTree('/p', [
        ['/p/1', 'a'],
        ['/p/3', 'c'],
      ]),
    ).toEqual({ 1: 'a', 3: 'c' });
    expect(buildTree('/p', [['/p/0', 'a']])).toEqual({ 0: 'a' });
  });

  it('ignores keys outside the subtree and returns undefined when nothing is there', () => {
    expect(buildTree('/p', [['/p-x', 'sibling']])).toBeUndefined();
    expect(
      buildTree('/p', [
        ['/p', 'v'],
        ['/p-x', 'sibling'],
      ]),
    ).toBe('v');
  });

  it('keeps a child named __proto__ as data', () => {
    const tree = buildTree('/p', [['/p/__proto__/polluted', 'yes']]) as Record<string, unknown>;
    expect(Object.keys(tree)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('normalizes paths as link.etcd did', () => {
    expect(normalizePath('collection')).toBe('/collection');
    expect(normalizePath('/collection//')).toBe('/collection');
    expect(normalizePath('')).toBe('/');
    expect(childPrefix('/')).toBe('/');
  });

  it('round-trips any representable tree (property)', () => {
    fc.assert(
      fc.property(treeArb, fc.constantFrom('/', '/root', '/a/b'), (tree, path) => {
        expect(buildTree(path, flattenTree(path, tree))).toEqual(tree);
      }),
      { numRuns: 500 },
    );
  });
});
