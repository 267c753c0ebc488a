import { LinkEtcdError } from '../errors.js';

/**
 * The dict protocol's codec, pure: a nested value <-> flat etcd keys.
 * A dict becomes one key per leaf, a list becomes children `1..n`, a scalar
 * its text. Reading back, children named exactly `1..n` become a list.
 */

/** What `get` returns. */
export type Tree = string | Tree[] | { [name: string]: Tree };

/** What `set` accepts: scalars are written as their text. */
export type TreeInput =
  | string
  | number
  | bigint
  | boolean
  | readonly TreeInput[]
  | { readonly [name: string]: TreeInput };

/** `collection` and `/collection/` both mean `/collection`; the root is `/`. */
export function normalizePath(path: string): string {
  const withRoot = path.startsWith('/') ? path : `/${path}`;
  const trimmed = withRoot.replace(/\/+$/, '');
  return trimmed === '' ? '/' : trimmed;
}

/** The prefix every descendant key of `path` starts with. */
export function childPrefix(path: string): string {
  return path === '/' ? '/' : `${path}/`;
}

const NO_DIRECTORIES =
  'etcd v3 has no directories, so it would read back as nothing (and set() would delete what is there): leave it out, write a value, or delete(path) to remove a subtree';

function badValue(key: string, what: string, hint: string): never {
  throw new LinkEtcdError('BAD_VALUE', `Cannot write ${what} at \`${key}\`: ${hint}`);
}

/**
 * Flattens `value` at `path` into key -> text, in depth-first order. An empty
 * dict or list anywhere, `null`, `undefined` or any other non-tree value is
 * refused with a `BAD_VALUE` LinkEtcdError naming the key: none could be read back as written.
 */
export function flattenTree(path: string, value: TreeInput): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (key: string, node: TreeInput): void => {
    if (typeof node === 'string') out.set(key, node);
    else if (typeof node === 'number' || typeof node === 'bigint' || typeof node === 'boolean')
      out.set(key, String(node));
    else if (Array.isArray(node)) {
      if (node.length === 0) badValue(key, 'an empty list', NO_DIRECTORIES);
      node.forEach((child, i) => {
        walk(`${childPrefix(key)}${i + 1}`, child);
      });
    } else if (node !== null && typeof node === 'object') {
      const children = Object.entries(node);
      if (children.length === 0) badValue(key, 'an empty dict', NO_DIRECTORIES);
      for (const [name, child] of children) walk(`${childPrefix(key)}${name}`, child);
    } else {
      badValue(
        key,
        node === null ? 'null' : typeof node,
        'use a string, number, boolean, list or dict (delete(path) removes a value)',
      );
    }
  };
  walk(normalizePath(path), value);
  return out;
}

interface Node {
  value?: string;
  children?: Map<string, Node>;
}

function toTree(node: Node): Tree {
  if (node.children === undefined) return node.value ?? '';
  const names = [...node.children.keys()];
  const isList = names.every((_, i) => node.children?.has(String(i + 1)));
  if (isList) return names.map((_, i) => toTree(node.children?.get(String(i + 1)) as Node));
  // fromEntries defines own properties, so a child named `__proto__` stays data, not a prototype.
  return Object.fromEntries(names.map((name) => [name, toTree(node.children?.get(name) as Node)]));
}

/**
 * Rebuilds the tree at `path` from its keys. A key that has both a value and
 * children (possible in etcd v3, which has no directories) reads as its
 * children: the tree shape wins. Returns undefined when nothing is there.
 */
export function buildTree(path: string, entries: Iterable<readonly [string, string]>): Tree | undefined {
  const root: Node = {};
  const prefix = childPrefix(path);
  let found = false;
  for (const [key, value] of entries) {
    if (key === path) {
      root.value = value;
      found = true;
      continue;
    }
    if (!key.startsWith(prefix)) continue;
    found = true;
    let node = root;
    for (const name of key.slice(prefix.length).split('/')) {
      node.children ??= new Map();
      let child = node.children.get(name);
      if (child === undefined) {
        child = {};
        node.children.set(name, child);
      }
      node = child;
    }
    node.value = value;
  }
  return found ? toTree(root) : undefined;
}
