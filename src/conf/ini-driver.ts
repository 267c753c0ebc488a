import { mkdir, readFile } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { watch as watchFiles } from 'chokidar';
import { Observable } from 'rxjs';
import { ConfValueError, IniSyntaxError, LinkEtcdError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic-write.js';
import { applyIniChanges, type IniChange } from '../ini/edit.js';
import { type IniDocument, parseIni } from '../ini/parse.js';
import { confDir as defaultConfDir } from '../layout/conf-dir.js';
import { rawTextProblem } from '../layout/ini-chars.js';
import { iniNameRefusal } from '../layout/mapping.js';
import type { Logger } from '../log.js';
import { BaseConfDriver } from './driver.js';
import type { RawConf } from './model.js';

export interface IniConfDriverOptions {
  /** The directory paths are relative to. Default `$B3J0F_CONF_DIR` or `~/etc`. */
  confDir?: string;
  /** Quiet time after the last file event before the file is read, so a save in several steps is read once, whole. Default 50 ms. */
  quietMs?: number;
  /** A file that does not parse, or that was emptied or removed, is read again after this long before it counts: it may be half written. Default 250 ms. */
  settleMs?: number;
  /** Every this often the file is read even without an event (events can be missed). Default 5000 ms. */
  rescanMs?: number;
  logger?: Logger;
}

function rawFromDoc(doc: IniDocument): RawConf {
  const raw: RawConf = {};
  for (const [name, entries] of doc.sections) {
    Object.defineProperty(raw, name, {
      value: Object.fromEntries(entries),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return raw;
}

/** Why INI cannot hold `value` as written, or undefined when it can. */
function unrepresentable(value: string): string | undefined {
  const problem = rawTextProblem(value);
  return problem === undefined ? undefined : `an INI value cannot be written raw: it ${problem}`;
}

/**
 * Configuration in INI files under the conf dir: `path` is a file path
 * relative to it, each section a category. Writes keep the file's comments,
 * blank lines and line order, and are atomic.
 */
export class IniConfDriver extends BaseConfDriver {
  private readonly dir: string;
  private readonly quietMs: number;
  private readonly settleMs: number;
  private readonly rescanMs: number;
  private readonly writing = new Map<string, Promise<void>>();

  constructor(options: IniConfDriverOptions = {}) {
    super(options.logger);
    this.dir = resolve(options.confDir ?? defaultConfDir());
    this.quietMs = options.quietMs ?? 50;
    this.settleMs = options.settleMs ?? 250;
    this.rescanMs = options.rescanMs ?? 5_000;
  }

  /** The file of a configuration path; refuses a path that leads out of the conf dir. */
  fileOf(path: string): string {
    const file = resolve(this.dir, path);
    const rel = relative(this.dir, file);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
      throw new LinkEtcdError('BAD_SETTING', `\`${path}\` is not a file inside the conf dir ${this.dir}`);
    }
    return file;
  }

  async rscpaths(path: string): Promise<string[]> {
    const file = this.fileOf(path);
    return (await this.readText(file)) === undefined ? [] : [file];
  }

  resource(): string {
    return this.dir;
  }

  private async readText(file: string): Promise<string | undefined> {
    try {
      return await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  protected async readRaw(path: string): Promise<RawConf> {
    const file = this.fileOf(path);
    const text = await this.readText(file);
    return text === undefined ? {} : rawFromDoc(parseIni(text, file));
  }

  protected watchRaw(path: string): Observable<RawConf> {
    return new Observable<RawConf>((subscriber) => {
      const file = this.fileOf(path);
      let last: RawConf | undefined;
      let reported: string | undefined;
      let timer: NodeJS.Timeout | undefined;
      let closed = false;
      let reading = false;
      let again = false;

      const schedule = (ms: number): void => {
        clearTimeout(timer);
        timer = setTimeout(() => void read(false), ms);
      };

      /** Reads, parses and emits when the content changed. `settled`: this is the retry after a parse failure. */
      const read = async (settled: boolean): Promise<void> => {
        if (closed) return;
        if (reading) {
          again = true;
          return;
        }
        reading = true;
        try {
          const text = await this.readText(file);
          const raw = text === undefined ? {} : rawFromDoc(parseIni(text, file));
          reported = undefined;
          const emptied = Object.keys(raw).length === 0 && last !== undefined && Object.keys(last).length > 0;
          if (emptied && !settled) {
            // Emptied or removed: maybe an editor between truncate and write. Believe it once it lasts.
            reading = false;
            clearTimeout(timer);
            timer = setTimeout(() => void read(true), this.settleMs);
            return;
          }
          if (!closed && (last === undefined || !isDeepStrictEqual(raw, last))) {
            last = raw;
            subscriber.next(raw);
          }
        } catch (error) {
          if (!(error instanceof IniSyntaxError)) {
            // Unreadable for now (permissions, a folder being replaced): the next event or rescan tries again.
            this.logger.warn({ err: error, file }, 'cannot read configuration file');
            return;
          }
          // A parse failure may be a save in progress: read once more before calling it an error.
          if (!settled) {
            reading = false;
            clearTimeout(timer);
            timer = setTimeout(() => void read(true), this.settleMs);
            return;
          }
          if (reported !== error.message) {
            reported = error.message;
            this.report(error);
          }
        } finally {
          reading = false;
        }
        if (again) {
          again = false;
          schedule(this.quietMs);
        }
      };

      const watcher = watchFiles(dirname(file), {
        depth: 0,
        ignoreInitial: true,
        ignored: (p: string) => p !== file && p !== dirname(file),
      });
      watcher.on('all', (_event, p) => {
        if (p === file) schedule(this.quietMs);
      });
      // A change between the first read and the watcher being ready would otherwise wait for the rescan.
      watcher.on('ready', () => schedule(0));
      watcher.on('error', (error) =>
        this.logger.warn({ err: error, file }, 'file watcher error; rescans go on'),
      );
      const rescan = setInterval(() => void read(false), this.rescanMs);
      void read(false);

      return () => {
        closed = true;
        clearTimeout(timer);
        clearInterval(rescan);
        void watcher.close();
      };
    });
  }

  protected writeRaw(path: string, raw: RawConf): Promise<void> {
    const file = this.fileOf(path);
    // One write at a time per file: two read-modify-writes in parallel would each drop the other's keys.
    const previous = this.writing.get(file) ?? Promise.resolve();
    const next = previous.then(
      () => this.writeNow(path, file, raw),
      () => this.writeNow(path, file, raw),
    );
    this.writing.set(file, next);
    void next
      .finally(() => {
        if (this.writing.get(file) === next) this.writing.delete(file);
      })
      .catch(() => undefined);
    return next;
  }

  private async writeNow(path: string, file: string, raw: RawConf): Promise<void> {
    const issues = Object.entries(raw).flatMap(([category, params]) =>
      Object.entries(params).flatMap(([parameter, value]) => {
        const reason =
          iniNameRefusal(category, 'section') ?? iniNameRefusal(parameter, 'key') ?? unrepresentable(value);
        return reason === undefined ? [] : [{ path, category, parameter, raw: value, reason }];
      }),
    );
    if (issues.length > 0) throw new ConfValueError(issues);
    const text = (await this.readText(file)) ?? '';
    // A file that does not parse is not rewritten: its author's text would be lost.
    const doc = parseIni(text, file);
    const changes: IniChange[] = [];
    for (const [section, params] of Object.entries(raw)) {
      for (const [key, value] of Object.entries(params)) {
        if (doc.sections.get(section)?.get(key) !== value) changes.push({ section, key, value });
      }
    }
    if (changes.length === 0) return;
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    await writeFileAtomic(file, applyIniChanges(doc, changes));
  }

  async close(): Promise<void> {}
}
