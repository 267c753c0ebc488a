import { spawn } from 'node:child_process';
import { dirname, join, posix, resolve } from 'node:path';
import picomatch from 'picomatch';
import { HookRefusedError } from '../errors.js';
import type { Logger } from '../log.js';
import { maskCredentials } from '../secrets.js';
import type { HookSpec } from './sync-settings.js';

/**
 * `{file}` and `{path}` -> references to LINK_ETCD_FILE / LINK_ETCD_PATH,
 * quoted for where they stand: `"$VAR"` bare, `$VAR` inside double quotes,
 * `'"$VAR"'` inside single quotes. Either way the value is one word and
 * never parsed by the shell. Where it stands is tracked as the shell does:
 * a `$(...)` or a backtick opens a fresh, unquoted context even inside
 * double quotes, and a `#` starting a word outside quotes runs to the end
 * of the line (a quote in a comment quotes nothing).
 */
export function withVariables(command: string): string {
  let out = '';
  // One entry per nesting level: the quote open there, and what closes the level.
  const stack: Array<{ quote: '"' | "'" | undefined; closer: ')' | '`' | undefined; depth: number }> = [
    { quote: undefined, closer: undefined, depth: 0 },
  ];
  const top = () => stack[stack.length - 1] as (typeof stack)[number];
  const placeholder = /\{(file|path)\}/y;
  for (let i = 0; i < command.length; i++) {
    const here = top();
    placeholder.lastIndex = i;
    const m = placeholder.exec(command);
    if (m) {
      const name = m[1] === 'file' ? '$LINK_ETCD_FILE' : '$LINK_ETCD_PATH';
      out += here.quote === '"' ? name : here.quote === "'" ? `'"${name}"'` : `"${name}"`;
      i += m[0].length - 1;
      continue;
    }
    const c = command[i] as string;
    if (c === '\\' && here.quote !== "'" && i + 1 < command.length) {
      out += c + command[i + 1];
      i++;
      continue;
    }
    if (here.quote !== "'") {
      if (c === '$' && command[i + 1] === '(') {
        stack.push({ quote: undefined, closer: ')', depth: 0 });
        out += '$(';
        i++;
        continue;
      }
      if (c === '`') {
        if (here.closer === '`' && here.quote === undefined) stack.pop();
        else stack.push({ quote: undefined, closer: '`', depth: 0 });
        out += c;
        continue;
      }
    }
    if (here.quote === undefined) {
      if (c === '(' && here.closer === ')') here.depth++;
      if (c === ')' && here.closer === ')') {
        if (here.depth === 0) stack.pop();
        else here.depth--;
        out += c;
        continue;
      }
      if (c === '#' && (i === 0 || /[\s;&|()]/.test(command[i - 1] as string))) {
        const end = command.indexOf('\n', i);
        const comment = end < 0 ? command.slice(i) : command.slice(i, end);
        out += comment;
        i += comment.length - 1;
        continue;
      }
    }
    if ((c === '"' || c === "'") && (here.quote === undefined || here.quote === c))
      here.quote = here.quote === undefined ? c : undefined;
    out += c;
  }
  return out;
}

/**
 * Runs a shell command within `timeout` seconds. `{file}` and `{path}` become
 * `"$LINK_ETCD_FILE"` and `"$LINK_ETCD_PATH"`: the values travel in the
 * environment, never in the command text, so a conf path made from an etcd
 * key (`x$(rm -rf ~).conf`) cannot inject a command whatever quotes the
 * command puts around its placeholders. Callers pass absolute paths (see
 * `Hooks.check`), so a value never starts with `-` and never reads as an
 * option of the command's program. What the command itself does with the
 * value is its own business: pasted into a nested `sh -c '...'`, it is
 * parsed again (the README shows the safe form).
 */
export function runCommand(
  command: string,
  vars: { file?: string; path?: string },
  timeoutS: number,
): Promise<{ code: number | null; output: string }> {
  const line = withVariables(command);
  return new Promise((resolve) => {
    // Its own process group, so a timeout kills what the command started too, not only the shell.
    const child = spawn('/bin/sh', ['-c', line], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
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
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
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
    this.quiet = undefined;
    this.cap = undefined;
  }

  /** Whether a call is waiting to fire. */
  get pending(): boolean {
    return this.cap !== undefined;
  }
}

/** The hooks of sync.conf, bound to the engine's two moments: before a file is replaced, after files changed. */
export class Hooks {
  private readonly matchers: Array<{
    spec: HookSpec;
    matches: (path: string) => boolean;
    reload?: Debouncer;
  }>;

  /**
   * `confDir` makes `{path}` the absolute path of the conf file. Without it
   * the path is found next to the staged file, which writeFileAtomic always
   * creates in the folder of the file it replaces.
   */
  constructor(
    specs: readonly HookSpec[],
    private readonly logger: Logger,
    private readonly confDir?: string,
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
            else
              this.logger.error(
                { hook: spec.name, code, output: maskCredentials(output) },
                `hook ${spec.name}: reload_cmd failed`,
              );
          });
        });
      }
      return entry;
    });
  }

  /** The absolute path of a conf path, as `{path}` expands. */
  absolutePath(confPath: string, staged: string): string {
    return this.confDir !== undefined
      ? join(resolve(this.confDir), confPath)
      : join(dirname(resolve(staged)), posix.basename(confPath));
  }

  /**
   * Runs every matching check_cmd on the staged file (`{file}`, absolute)
   * with `{path}` the conf file's absolute path; rejects with
   * HookRefusedError on the first refusal.
   */
  async check(confPath: string, staged: string): Promise<void> {
    const vars = { file: resolve(staged), path: this.absolutePath(confPath, staged) };
    for (const m of this.matchers) {
      if (m.spec.checkCmd === undefined || !m.matches(confPath)) continue;
      const { code, output } = await runCommand(m.spec.checkCmd, vars, m.spec.timeout);
      if (code !== 0) {
        // A validator may echo the lines it checks: what it says is masked like any value.
        const said = output ? `: ${maskCredentials(output)}` : '';
        throw new HookRefusedError(m.spec.name, confPath, `exit ${code}${said}`);
      }
    }
  }

  /** Files landed: schedules the reload_cmd of every hook that watches one of them. */
  changed(confPaths: readonly string[]): void {
    for (const m of this.matchers) if (m.reload && confPaths.some((p) => m.matches(p))) m.reload.poke();
  }

  /** Drops the reloads still waiting, or with `flush` runs them now (a SIGHUP must not swallow one). */
  stop(options: { flush?: boolean } = {}): void {
    for (const m of this.matchers) {
      if (options.flush && m.reload?.pending) m.reload.flush();
      else m.reload?.cancel();
    }
  }
}
