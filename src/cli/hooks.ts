import { spawn } from 'node:child_process';
import picomatch from 'picomatch';
import { LinkEtcdError } from '../errors.js';
import type { Logger } from '../log.js';
import type { HookSpec } from './sync-settings.js';

/** A check_cmd said no: the old file stays. */
export class HookRefusedError extends LinkEtcdError {
  constructor(hook: string, file: string, detail: string) {
    super('BAD_VALUE', `hook ${hook}: check_cmd refused the new ${file} (${detail}): the old file stays`);
  }
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs a shell command with `{file}` and `{path}` filled in (shell-quoted), within `timeout` seconds. */
export function runCommand(
  command: string,
  vars: { file?: string; path?: string },
  timeoutS: number,
): Promise<{ code: number | null; output: string }> {
  const line = command.replace(/\{(file|path)\}/g, (_m, k: 'file' | 'path') => quote(vars[k] ?? ''));
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', line], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LINK_ETCD_FILE: vars.file ?? '', LINK_ETCD_PATH: vars.path ?? '' },
    });
    let output = '';
    const keep = (d: Buffer) => {
      output = (output + String(d)).slice(-2000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => {
      output += `\n(killed after ${timeoutS} s)`;
      child.kill('SIGKILL');
    }, timeoutS * 1000);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ code: 127, output: error.message });
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output: output.trim() });
    });
  });
}

/**
 * Debounces bursts like consul-template's `wait { min, max }`: fires `min`
 * after the last call, but never later than `max` after the first.
 */
export class Debouncer {
  private quiet: NodeJS.Timeout | undefined;
  private cap: NodeJS.Timeout | undefined;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly fire: () => void,
  ) {}

  poke(): void {
    clearTimeout(this.quiet);
    this.quiet = setTimeout(() => this.flush(), this.minMs);
    this.cap ??= setTimeout(() => this.flush(), this.maxMs);
  }

  flush(): void {
    clearTimeout(this.quiet);
    clearTimeout(this.cap);
    this.quiet = undefined;
    this.cap = undefined;
    this.fire();
  }

  cancel(): void {
    clearTimeout(this.quiet);
    clearTimeout(this.cap);
  }
}

/** The hooks of sync.conf, bound to the engine's two moments: before a file is replaced, after files changed. */
export class Hooks {
  private readonly matchers: Array<{
    spec: HookSpec;
    matches: (path: string) => boolean;
    reload?: Debouncer;
  }>;

  constructor(
    specs: readonly HookSpec[],
    private readonly logger: Logger,
  ) {
    this.matchers = specs.map((spec) => {
      const entry: { spec: HookSpec; matches: (path: string) => boolean; reload?: Debouncer } = {
        spec,
        matches: picomatch(spec.glob, { dot: false }),
      };
      if (spec.reloadCmd !== undefined) {
        const cmd = spec.reloadCmd;
        entry.reload = new Debouncer(spec.waitMin * 1000, spec.waitMax * 1000, () => {
          void runCommand(cmd, {}, spec.timeout).then(({ code, output }) => {
            if (code === 0) this.logger.info({ hook: spec.name }, 'reload_cmd ran');
            else this.logger.error({ hook: spec.name, code, output }, `hook ${spec.name}: reload_cmd failed`);
          });
        });
      }
      return entry;
    });
  }

  /** Runs every matching check_cmd on the staged file; rejects with HookRefusedError on the first refusal. */
  async check(confPath: string, staged: string): Promise<void> {
    for (const m of this.matchers) {
      if (m.spec.checkCmd === undefined || !m.matches(confPath)) continue;
      const { code, output } = await runCommand(
        m.spec.checkCmd,
        { file: staged, path: confPath },
        m.spec.timeout,
      );
      if (code !== 0)
        throw new HookRefusedError(m.spec.name, confPath, `exit ${code}${output ? `: ${output}` : ''}`);
    }
  }

  /** Files landed: schedules the reload_cmd of every hook that watches one of them. */
  changed(confPaths: readonly string[]): void {
    for (const m of this.matchers) if (m.reload && confPaths.some((p) => m.matches(p))) m.reload.poke();
  }

  stop(): void {
    for (const m of this.matchers) m.reload?.cancel();
  }
}
