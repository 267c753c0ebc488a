import { posix } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { distinctUntilChanged, map, type Observable } from 'rxjs';
import { EtcdMiddleware, type MiddlewareOptions } from '../middleware/middleware.js';
import { childPrefix, normalizePath } from '../middleware/tree.js';
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
    // The same reading as watch(): keys two levels down, whatever their names.
    const key = this.keyOf(path);
    return rawFromEntries(key, await this.middleware.list(childPrefix(key)));
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
