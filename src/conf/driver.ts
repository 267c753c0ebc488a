import { type Observable, Subject } from 'rxjs';
import { ConfValueError, type LinkEtcdError } from '../errors.js';
import { defaultLogger, type Logger } from '../log.js';
import type { ConfDeclaration, ConfValues, RawConf } from './model.js';
import { resolveConf } from './resolve.js';
import { typedConf } from './typed-stream.js';
import type { JsonValue } from './value-types.js';

/** A value `setconf` accepts: text, or a typed value written the way its type reads it back. */
export type ConfInputValue = string | number | boolean | readonly string[] | JsonValue;

/** What `setconf` writes: category -> parameter -> value. */
export type ConfInput = Readonly<Record<string, Readonly<Record<string, ConfInputValue>>>>;

/**
 * Where configuration lives (etcd, INI files), as b3j0f.conf drivers did,
 * plus `watch`: the whole typed configuration at subscription and after
 * every change.
 */
export interface ConfDriver {
  /** The resources `path` maps to that exist now: etcd keys or file paths. */
  rscpaths(path: string): Promise<string[]>;
  /** The underlying resource (the EtcdMiddleware, the conf dir). */
  resource(): unknown;
  getconf(path: string): Promise<RawConf>;
  getconf<D extends ConfDeclaration>(path: string, conf: D): Promise<ConfValues<D>>;
  setconf(path: string, values: ConfInput): Promise<void>;
  watch(path: string): Observable<RawConf>;
  watch<D extends ConfDeclaration>(path: string, conf: D): Observable<ConfValues<D>>;
  /** Values that did not parse, files that did not parse: also logged. */
  readonly errors$: Observable<LinkEtcdError>;
  close(): Promise<void>;
}

/** Typed values back to text, the way each type parses it: lists comma-separated, objects as JSON. */
export function formatValue(value: ConfInputValue): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join(', ');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

export function formatInput(values: ConfInput): RawConf {
  const raw: RawConf = {};
  for (const [cat, params] of Object.entries(values)) {
    const section: Record<string, string> = {};
    for (const [name, value] of Object.entries(params)) {
      Object.defineProperty(section, name, {
        value: formatValue(value),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    Object.defineProperty(raw, cat, { value: section, enumerable: true, writable: true, configurable: true });
  }
  return raw;
}

/** The typed half every driver shares; a driver supplies raw reads, writes and change streams. */
export abstract class BaseConfDriver implements ConfDriver {
  protected readonly logger: Logger;
  private readonly errors = new Subject<LinkEtcdError>();
  readonly errors$: Observable<LinkEtcdError> = this.errors.asObservable();

  constructor(logger?: Logger) {
    this.logger = logger ?? defaultLogger();
  }

  abstract rscpaths(path: string): Promise<string[]>;
  abstract resource(): unknown;
  protected abstract readRaw(path: string): Promise<RawConf>;
  protected abstract watchRaw(path: string): Observable<RawConf>;
  protected abstract writeRaw(path: string, raw: RawConf): Promise<void>;
  abstract close(): Promise<void>;

  getconf(path: string): Promise<RawConf>;
  getconf<D extends ConfDeclaration>(path: string, conf: D): Promise<ConfValues<D>>;
  async getconf<D extends ConfDeclaration>(path: string, conf?: D): Promise<RawConf | ConfValues<D>> {
    const raw = await this.readRaw(path);
    if (conf === undefined) return raw;
    const { values, issues } = await resolveConf(conf, raw, path);
    if (issues.length > 0) throw new ConfValueError(issues);
    return values;
  }

  async setconf(path: string, values: ConfInput): Promise<void> {
    await this.writeRaw(path, formatInput(values));
  }

  watch(path: string): Observable<RawConf>;
  watch<D extends ConfDeclaration>(path: string, conf: D): Observable<ConfValues<D>>;
  watch<D extends ConfDeclaration>(path: string, conf?: D): Observable<RawConf> | Observable<ConfValues<D>> {
    const raw$ = this.watchRaw(path);
    if (conf === undefined) return raw$;
    return typedConf(raw$, conf, path, (error) => this.report(error));
  }

  /** Sends a failure to the error stream and the log. */
  protected report(error: LinkEtcdError): void {
    this.logger.error({ err: { code: error.code, message: error.message } }, error.message);
    this.errors.next(error);
  }
}
