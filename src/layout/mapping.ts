import { posix } from 'node:path';
import { iniNameProblem } from './ini-chars.js';
import { hasControl, mirroredRefusal, NOT_UTF8, onNamePolicyChange, type Refusal } from './mirrored.js';

/**
 * The one mapping between the three views of DESIGN.md §1, as a value every
 * layer shares: conf path `myproject/app.conf` + section `MYCONF` + key
 * `myparam` <-> etcd key `<prefix>myproject/app.conf/MYCONF/myparam`.
 */
export interface Layout {
  /** Key prefix, always ending in `/`. Default `/`. */
  readonly prefix: string;
}

export function layout(prefix = '/'): Layout {
  const withRoot = prefix.startsWith('/') ? prefix : `/${prefix}`;
  return { prefix: withRoot.endsWith('/') ? withRoot : `${withRoot}/` };
}

/** One parameter as the sync engine sees it. */
export interface KeyAddress {
  readonly confPath: string;
  readonly section: string;
  readonly key: string;
}

/**
 * A section or key name INI can hold on one line and configparser reads
 * back as the same name (ini-chars.ts), and that maps to one key segment.
 */
export function iniNameRefusal(name: string, what: 'section' | 'key'): Refusal {
  if (hasControl(name)) return `control character in a ${what} name`;
  if (name.includes('\uFFFD')) return `${what} name ${NOT_UTF8}`;
  if (name.includes('/')) return `${what} name holds \`/\``;
  return iniNameProblem(name, what);
}

export type KeyParse =
  | { readonly ok: true; readonly address: KeyAddress }
  | { readonly ok: false; readonly reason: string };

/**
 * etcd key -> (conf path, section, key), or the reason it maps to nothing
 * safe. The last two segments are the section and the key; everything
 * before them is the conf path, which must be a mirrored file.
 */
export function parseKey(l: Layout, etcdKey: string): KeyParse {
  if (!etcdKey.startsWith(l.prefix)) return { ok: false, reason: `outside the prefix ${l.prefix}` };
  const parts = etcdKey.slice(l.prefix.length).split('/');
  if (parts.length < 3) return { ok: false, reason: 'not <file.conf>/<SECTION>/<key>' };
  const key = parts.pop() as string;
  const section = parts.pop() as string;
  const confPath = parts.join('/');
  const refusal =
    confPathRefusal(confPath) ?? iniNameRefusal(section, 'section') ?? iniNameRefusal(key, 'key');
  if (refusal !== undefined) return { ok: false, reason: refusal };
  return { ok: true, address: { confPath, section, key } };
}

/** Verdicts on conf paths: a daemon sees the same few thousand files for every key (measured: -0.5 s per 100,000 keys). */
const confPathVerdicts = new Map<string, Refusal>();
const VERDICT_CACHE_LIMIT = 100_000;
// A verdict holds under one name policy only (`allow_any_names`).
onNamePolicyChange(() => confPathVerdicts.clear());

function confPathRefusal(confPath: string): Refusal {
  if (confPathVerdicts.has(confPath)) return confPathVerdicts.get(confPath);
  let refusal = mirroredRefusal(confPath);
  // Normalization must be a no-op: a path that changes under it is not the path it claims to be.
  if (refusal === undefined && posix.normalize(confPath) !== confPath) refusal = 'path is not in normal form';
  if (confPathVerdicts.size >= VERDICT_CACHE_LIMIT) confPathVerdicts.clear();
  confPathVerdicts.set(confPath, refusal);
  return refusal;
}

export function keyOf(l: Layout, address: KeyAddress): string {
  return `${l.prefix}${address.confPath}/${address.section}/${address.key}`;
}

/** The refusal for a section/key read from a file, which must map to a key that maps back to it. */
export function addressRefusal(address: KeyAddress): Refusal {
  return (
    mirroredRefusal(address.confPath) ??
    iniNameRefusal(address.section, 'section') ??
    iniNameRefusal(address.key, 'key')
  );
}
