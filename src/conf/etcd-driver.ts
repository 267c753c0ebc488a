import { posix } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { distinctUntilChanged, map, type Observable } from 'rxjs';
import { EtcdKeyError } from '../errors.js';
import { EtcdMiddleware, type MiddlewareOptions } from '../middleware/middleware.js';
import { childPrefix, normalizePath, type Tree } from '../middleware/tree.js';
import { BaseConfDriver } from './driver.js';
import type { RawConf } from './model.js';

export interface EtcdConfDriverOptions extends MiddlewareOptions {
  /** A middleware to share; default: one of the driver's own, from middleware.conf and these options. */
  middleware?: EtcdMiddleware;
  /** Put in front of every key. Default `/`. */
  prefix?: string;
}

function setOwn<T>(target: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** `{ CATEGORY: { param: text } }` from the keys under `base`; deeper keys are not parameters and are skipped. */
export function rawFromEntries(base: string, entries: Iterable<readonly [string, string]>): RawConf {
  const prefix = childPrefix(base);
  const raw: RawConf = {};
  for (const [key, value] of entries) {
    if (!key.startsWith(prefix)) continue;
    const parts = key.slice(prefix.length).split('/');
    if (parts.length !== 2) continue;
    const [cat, param] = parts as [string, string];
    if (!Object.hasOwn(raw, cat)) setOwn(raw, cat, {});
    setOwn(raw[cat] as Record<string, string>, param, value);
  }
  return raw;
}

function rawFromTree(tree: Tree): RawConf {
  const raw: RawConf = {};
  if (typeof tree !== 'object' || Array.isArray(tree)) return raw;
  for (const [cat, params] of Object.entries(tree)) {
    if (typeof params !== 'object' || Array.isArray(params)) continue;
    const section: Record<string, string> = {};
    for (const [name, value] of Object.entries(params))
      if (typeof value === 'string') setOwn(section, name, value);
    setOwn(raw, cat, section);
  }
  return raw;
}

/**
 * Configuration in etcd, laid out as `/<prefix>/<path>/<CATEGORY>/<param>`:
 * `myproject/myconfigurable.conf` holds `/myproject/myconfigurable.conf/MYCONF/myparam`.
 */
export class EtcdConfDriver extends BaseConfDriver {
  private readonly middleware: EtcdMiddleware;
  private readonly owned: boolean;
  private readonly prefix: string;

  constructor(options: EtcdConfDriverOptions = {}) {
    const { middleware, prefix, ...rest } = options;
    super(options.logger);
    this.owned = middleware === undefined;
    this.middleware = middleware ?? new EtcdMiddleware({ ...rest, logger: this.logger });
    this.prefix = normalizePath(prefix ?? '/');
  }

  /** The etcd path of a configuration path. */
  keyOf(path: string): string {
    return normalizePath(posix.join(this.prefix, path));
  }

  async rscpaths(path: string): Promise<string[]> {
    const key = this.keyOf(path);
    return (await this.middleware.has(key)) ? [key] : [];
  }

  resource(): EtcdMiddleware {
    return this.middleware;
  }

  protected async readRaw(path: string): Promise<RawConf> {
    try {
      return rawFromTree(await this.middleware.get(this.keyOf(path)));
    } catch (error) {
      if (error instanceof EtcdKeyError) return {};
      throw error;
    }
  }

  protected watchRaw(path: string): Observable<RawConf> {
    const key = this.keyOf(path);
    // One batch per etcd response: the keys of one transaction come out as one configuration.
    return this.middleware.batches(childPrefix(key)).pipe(
      map((batch) =>
        rawFromEntries(
          key,
          [...batch.state].map(([k, entry]) => [k, entry.value] as const),
        ),
      ),
      distinctUntilChanged<RawConf>(isDeepStrictEqual),
    );
  }

  protected async writeRaw(path: string, raw: RawConf): Promise<void> {
    await this.middleware.update(this.keyOf(path), raw);
  }

  async close(): Promise<void> {
    if (this.owned) await this.middleware.close();
  }
}
