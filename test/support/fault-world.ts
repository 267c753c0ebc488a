import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
import { parseIni } from '../../src/ini/parse.js';
import type { EtcdServer } from '../harness/etcd.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/wait.js';
import { followOutput } from './daemon-output.js';

/**
 * A conf dir of FILES x KEYS mirrored by a real `link-etcd sync` process
 * (with --http), plus a ledger of every edit made on either side, for fault
 * scenarios: after a fault, both sides must hold the same keys, every edit
 * must have reached the other side or be a recorded conflict loser, and no
 * key nobody edited may have changed or gone.
 */

const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
export const FILES = 20;
export const KEYS = 5;

export const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const fileName = (i: number) => `f${String(i).padStart(2, '0')}.conf`;

export interface Daemon {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: Array<Record<string, unknown>>;
  readonly stderr: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface Probe {
  /** ms since the epoch when the request was sent and when its answer (or failure) came. */
  readonly sent: number;
  readonly done: number;
  /** 0 when the request failed (no answer within its timeout). */
  readonly status: number;
  readonly body: string;
}

export interface SideState {
  readonly files: Map<string, string>;
  readonly etcd: Map<string, string>;
  /** key -> losing values found in `<file>.conflict-*` records. */
  readonly losers: Map<string, Set<string>>;
  readonly records: number;
  readonly temps: string[];
  readonly unparsable: string[];
}

type Edit = { value: string | undefined };

/**
 * What each key should be. `agreed` is the state both sides held at the last
 * checkpoint; `pending` the last edit of each side since. A key is edited by
 * one side only between checkpoints, unless the daemon cannot act meanwhile
 * (paused, stopped, killed): then both edits are concurrent and one may lose,
 * but only into a conflict record.
 */
export class Ledger {
  private agreed = new Map<string, string>();
  private readonly pending = new Map<string, { file?: Edit; etcd?: Edit }>();

  edit(side: 'file' | 'etcd', key: string, value: string | undefined): void {
    const p = this.pending.get(key) ?? {};
    p[side] = { value };
    this.pending.set(key, p);
  }

  get pendingKeys(): number {
    return this.pending.size;
  }

  /** Empty when the state is what the edits allow; else one line per problem. */
  problems(s: SideState): string[] {
    const out: string[] = [];
    for (const u of s.unparsable) out.push(`unparsable: ${u}`);
    const keys = new Set([
      ...s.files.keys(),
      ...s.etcd.keys(),
      ...this.agreed.keys(),
      ...this.pending.keys(),
    ]);
    for (const key of [...keys].sort()) {
      const f = s.files.get(key);
      const e = s.etcd.get(key);
      if (f !== e) {
        out.push(`${key}: file ${show(f)} != etcd ${show(e)}`);
        continue;
      }
      const p = this.pending.get(key);
      if (p === undefined) {
        const want = this.agreed.get(key);
        if (f !== want) out.push(`${key}: ${show(f)}, but nobody edited it (was ${show(want)})`);
        continue;
      }
      const edits = (['file', 'etcd'] as const).flatMap((side) => {
        const edit = p[side];
        return edit === undefined ? [] : [{ side, value: edit.value }];
      });
      if (!edits.some((edit) => edit.value === f))
        out.push(`${key}: ${show(f)} is none of the edits ${edits.map((x) => `${x.side}=${show(x.value)}`)}`);
      for (const { side, value } of edits) {
        // A change beats a deletion: a deletion that lost is not recorded.
        if (value === f || value === undefined) continue;
        if (!s.losers.get(key)?.has(value))
          out.push(`${key}: the ${side} edit ${show(value)} lost to ${show(f)} without a conflict record`);
      }
    }
    return out;
  }

  /** Both sides agree (checked): the next edits are judged against this state. */
  checkpoint(s: SideState): void {
    this.agreed = new Map(s.files);
    this.pending.clear();
  }
}

const show = (v: string | undefined) => (v === undefined ? '(none)' : JSON.stringify(v));

export class FaultWorld {
  readonly ledger = new Ledger();
  readonly client: Etcd3;
  daemon: Daemon | undefined;
  /** Every daemon started, in order (their log lines explain a failure). */
  readonly daemons: Daemon[] = [];
  /** What this test did to each file, with times: for a failure's explanation. */
  readonly trail: Array<{ at: number; file: string; what: string }> = [];
  private constructor(
    readonly etcd: EtcdServer,
    readonly confDir: string,
    readonly stateDir: string,
    readonly prefix: string,
    readonly port: number,
    private readonly defer: (cleanup: () => unknown) => void,
  ) {
    // No retries or circuit breaker: a poll that fails is simply tried again, at once, by the test.
    this.client = new Etcd3({
      hosts: etcd.endpoint,
      faultHandling: { host: () => noop, global: noop },
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + 5_000 }),
    });
  }

  static async create(
    etcd: EtcdServer,
    name: string,
    defer: (cleanup: () => unknown) => void,
  ): Promise<FaultWorld> {
    const confDir = await mkdtemp(join(tmpdir(), 'link-etcd-faults-conf-'));
    const stateDir = await mkdtemp(join(tmpdir(), 'link-etcd-faults-state-'));
    const world = new FaultWorld(
      etcd,
      confDir,
      stateDir,
      `/${name}-${process.pid}/`,
      await freePort(),
      defer,
    );
    defer(async () => {
      world.client.close();
      await rm(confDir, { recursive: true, force: true });
      await rm(stateDir, { recursive: true, force: true });
    });
    return world;
  }

  key(file: number, section: string, key: string): string {
    return `${this.prefix}${fileName(file)}/${section}/${key}`;
  }

  /** FILES files of KEYS keys each, in the conf dir, before the first start. */
  async seed(): Promise<void> {
    for (let i = 0; i < FILES; i++) {
      const lines = ['[S]'];
      for (let k = 0; k < KEYS; k++) {
        lines.push(`k${k} = seed-${i}-${k}`);
        this.ledger.edit('file', this.key(i, 'S', `k${k}`), `seed-${i}-${k}`);
      }
      await writeFile(join(this.confDir, fileName(i)), `${lines.join('\n')}\n`);
    }
  }

  /** Starts `link-etcd sync` on this conf dir, state dir and prefix (again: the same base). */
  start(...extra: string[]): Daemon {
    const args = [
      MAIN,
      `--endpoints=${this.etcd.clientUrl}`,
      `--conf-dir=${this.confDir}`,
      'sync',
      `--state-dir=${this.stateDir}`,
      `--prefix=${this.prefix}`,
      `--http=127.0.0.1:${this.port}`,
      '--log-format=json',
      ...extra,
    ];
    const env = { ...process.env };
    delete env.LINK_ETCD_FAULT_SECONDS;
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    const { lines, stderr, exited } = followOutput(child);
    this.defer(() => {
      // SIGKILL also ends a stopped process.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    if (child.pid === undefined) throw new Error('link-etcd sync did not start');
    const daemon = { child, pid: child.pid, lines, stderr, exited };
    this.daemon = daemon;
    this.daemons.push(daemon);
    this.trail.push({
      at: Date.now(),
      file: '*',
      what: `daemon ${this.daemons.length} started, pid ${daemon.pid}`,
    });
    return daemon;
  }

  async startSynced(...extra: string[]): Promise<Daemon> {
    const d = this.start(...extra);
    await waitFor(() => d.lines.some((l) => l.msg === 'in sync; following both sides'), {
      timeout: 30_000,
      message: 'the daemon never said it is in sync',
    });
    return d;
  }

  async get(path: string, timeoutMs = 5_000): Promise<Probe> {
    const sent = Date.now();
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}${path}`, {
        signal: AbortSignal.timeout(timeoutMs),
      });
      const body = await res.text();
      return { sent, done: Date.now(), status: res.status, body };
    } catch (error) {
      return { sent, done: Date.now(), status: 0, body: String(error) };
    }
  }

  /** Polls /readyz until stop() is called; returns every answer. */
  pollReadiness(everyMs = 250): { stop: () => Promise<Probe[]>; probes: Probe[] } {
    const probes: Probe[] = [];
    let running = true;
    const loop = (async () => {
      while (running) {
        probes.push(await this.get('/readyz'));
        await pause(everyMs);
      }
    })();
    return {
      probes,
      stop: async () => {
        running = false;
        await loop;
        return probes;
      },
    };
  }

  async metric(name: string): Promise<number | undefined> {
    const { body } = await this.get('/metrics');
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(body);
    return m === null ? undefined : Number(m[1]);
  }

  /** Both sides as they are now, and the conflict records. */
  async state(): Promise<SideState> {
    const files = new Map<string, string>();
    const losers = new Map<string, Set<string>>();
    const temps: string[] = [];
    const unparsable: string[] = [];
    let records = 0;
    for (const name of await readdir(this.confDir)) {
      const record = /^(.+\.conf)\.conflict-/.exec(name);
      if (name.startsWith('.link-etcd-')) temps.push(name);
      if (!name.endsWith('.conf') && record === null) continue;
      const text = await readFile(join(this.confDir, name), 'utf8').catch(() => undefined);
      if (text === undefined) continue;
      let sections: ReadonlyMap<string, ReadonlyMap<string, string>>;
      try {
        sections = parseIni(text, name).sections;
      } catch (error) {
        unparsable.push(`${name}: ${(error as Error).message}`);
        continue;
      }
      const confPath = record === null ? name : (record[1] as string);
      if (record !== null) records++;
      for (const [section, entries] of sections)
        for (const [k, v] of entries) {
          const key = `${this.prefix}${confPath}/${section}/${k}`;
          if (record === null) files.set(key, v);
          else {
            const set = losers.get(key) ?? new Set<string>();
            set.add(v);
            losers.set(key, set);
          }
        }
    }
    const etcd = new Map(Object.entries(await this.client.getAll().prefix(this.prefix).strings()));
    return { files, etcd, losers, records, temps, unparsable };
  }

  /** Waits until the ledger finds nothing wrong; returns the seconds since `since`. */
  async settle(since: number, timeoutMs = 60_000, message = 'both sides never converged'): Promise<number> {
    let last: string[] = [];
    let state: SideState | undefined;
    try {
      await waitFor(
        async () => {
          state = await this.state();
          last = this.ledger.problems(state);
          return last.length === 0;
        },
        { timeout: timeoutMs, interval: 100, message },
      );
    } catch (error) {
      throw new Error(
        `${(error as Error).message}: ${last.length} problems, first ones:\n${last.slice(0, 25).join('\n')}\n${this.explain(last)}`,
      );
    }
    const seconds = (Date.now() - since) / 1000;
    this.ledger.checkpoint(state as SideState);
    return seconds;
  }

  note(what: string): void {
    this.trail.push({ at: Date.now(), file: '*', what });
  }

  /** The trail and the daemons' log lines about the files named in some problems. */
  explain(problems: readonly string[]): string {
    const files = new Set<string>();
    for (const p of problems.slice(0, 25))
      if (p.startsWith(this.prefix)) files.add(p.slice(this.prefix.length).split('/')[0] as string);
    const out: string[] = [];
    for (const t of this.trail)
      if (t.file === '*' || files.has(t.file))
        out.push(`${new Date(t.at).toISOString()} test: ${t.file} ${t.what}`);
    this.daemons.forEach((d, i) => {
      for (const line of d.lines) {
        const text = JSON.stringify(line);
        if ([...files].some((f) => text.includes(f)) || (typeof line.level === 'number' && line.level >= 50))
          out.push(`${new Date(Number(line.time)).toISOString()} daemon ${i + 1}: ${text.slice(0, 400)}`);
      }
    });
    out.sort();
    return `what happened to ${[...files].join(', ')}:\n${out.slice(-150).join('\n')}`;
  }

  /** A check of the state now, without waiting: the problems, empty when none. */
  async problemsNow(): Promise<string[]> {
    return this.ledger.problems(await this.state());
  }

  /**
   * Sets (or deletes, value undefined) keys of one file as an editor would,
   * with an atomic rename. The file is read, edited and replaced only if it
   * did not change meanwhile (the daemon may be writing it): an edit never
   * wipes one of the daemon's own writes.
   */
  async editFile(
    file: number,
    changes: ReadonlyArray<[section: string, key: string, value: string | undefined]>,
  ) {
    const path = join(this.confDir, fileName(file));
    for (let attempt = 0; ; attempt++) {
      const before = await readFile(path, 'utf8');
      const after = editIni(before, changes);
      const temp = join(this.confDir, `.fault-edit-${randomBytes(6).toString('hex')}.tmp`);
      await writeFile(temp, after);
      // Compared and renamed synchronously, back to back: no await between them where a write of the
      // daemon could land unseen (only the microseconds between two system calls are left).
      if (readFileSync(path, 'utf8') !== before) {
        await rm(temp, { force: true });
        if (attempt > 50) throw new Error(`${path} never stood still for an edit`);
        continue;
      }
      renameSync(temp, path);
      this.trail.push({
        at: Date.now(),
        file: fileName(file),
        what: `edited (${changes.length} keys, first ${changes[0]?.slice(1).join('=')}), ${attempt} retries`,
      });
      break;
    }
    for (const [section, key, value] of changes)
      this.ledger.edit('file', this.key(file, section, key), value);
  }

  async putEtcd(key: string, value: string): Promise<number> {
    this.ledger.edit('etcd', key, value);
    const res = await this.client.put(key).value(value).exec();
    return Number(res.header.revision);
  }

  async deleteEtcd(key: string): Promise<void> {
    this.ledger.edit('etcd', key, undefined);
    await this.client.delete().key(key).exec();
  }

  /** Puts many keys in one transaction; returns its revision. */
  async putEtcdTxn(entries: ReadonlyArray<[key: string, value: string]>): Promise<number> {
    for (const [key, value] of entries) this.ledger.edit('etcd', key, value);
    const res = await this.client
      .if(entries[0]?.[0] ?? this.prefix, 'Create', '>', -1)
      .then(...entries.map(([key, value]) => this.client.put(key).value(value)))
      .commit();
    return Number(res.header.revision);
  }

  async revision(): Promise<number> {
    const res = await this.client.get(`${this.prefix}\u0000revision-probe`).exec();
    return Number(res.header.revision);
  }
}

/** Sets or removes `key = value` lines in an INI text of plain sections; new keys go at the end of their section. */
export function editIni(text: string, changes: ReadonlyArray<[string, string, string | undefined]>): string {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (const [section, key, value] of changes) {
    let current: string | undefined;
    let sectionEnd = -1;
    let found = -1;
    for (let i = 0; i < lines.length; i++) {
      const line = (lines[i] as string).trim();
      const header = /^\[(.*)\]$/.exec(line);
      if (header !== null) {
        current = header[1];
        if (current === section) sectionEnd = i;
        continue;
      }
      if (current !== section) continue;
      sectionEnd = i;
      const m = /^([^=;#]+?)\s*=/.exec(line);
      if (m !== null && m[1] === key) found = i;
    }
    if (found >= 0) {
      if (value === undefined) lines.splice(found, 1);
      else lines[found] = `${key} = ${value}`;
    } else if (value !== undefined) {
      if (sectionEnd < 0) lines.push(`[${section}]`, `${key} = ${value}`);
      else lines.splice(sectionEnd + 1, 0, `${key} = ${value}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The pid of the etcd serving this data dir (the harness keeps its child to itself). */
export async function etcdPid(etcd: EtcdServer): Promise<number> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const argv = cmdline.split('\0');
    if (argv.includes(`--data-dir=${etcd.dataDir}`) && argv.some((a) => a === 'etcd' || a.endsWith('/etcd')))
      return Number(entry);
  }
  throw new Error(`no etcd process serves ${etcd.dataDir}`);
}
