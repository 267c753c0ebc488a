import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import picomatch from 'picomatch';
import { SettingsError } from '../errors.js';
import { parseBoolean } from '../ini/boolean.js';
import { parseIni } from '../ini/parse.js';
import { stripInlineComment, unknownKeyWarning } from '../middleware/settings.js';
import { SYNC_DEFAULTS } from '../sync/defaults.js';
import { CONFLICT_POLICY_NAMES as CONFLICT_POLICIES, type ConflictPolicy } from '../sync/merge.js';

/** A confd/consul-template style hook, from a `[HOOK name]` section of sync.conf. */
export interface HookSpec {
  readonly name: string;
  /** Conf paths it watches, a glob relative to the conf dir (`nginx/*.conf`, `**\/*.conf`). */
  readonly glob: string;
  /** Run on the staged new file (`{file}`, `{path}`) before it replaces the old one; non-zero refuses the change. */
  readonly checkCmd: string | undefined;
  /** Run after changes land, once per burst. */
  readonly reloadCmd: string | undefined;
  /** Quiet time after the last change before reload_cmd runs (seconds). */
  readonly waitMin: number;
  /** reload_cmd runs at the latest this long after the first change of a burst (seconds). */
  readonly waitMax: number;
  /** Seconds a command may run before it is killed and counted as failed. */
  readonly timeout: number;
}

export interface SyncSettings {
  readonly prefix: string;
  readonly conflict: ConflictPolicy;
  readonly stateDir: string | undefined;
  readonly allowMassDelete: boolean;
  readonly fullReconcile: number;
  readonly maxDeleteShare: number;
  readonly logLevel: string;
  readonly logFormat: 'json' | 'pretty' | undefined;
  readonly http: string | undefined;
  readonly localEtcd: boolean;
  readonly exec: string | undefined;
  readonly reloadSignal: NodeJS.Signals;
  readonly hooks: readonly HookSpec[];
  /**
   * Mirror conf paths outside the portable set (letters, digits, `. _ - + @`):
   * the daemon passes it to `setNamePolicy` of layout/mirrored.
   */
  readonly allowAnyNames: boolean;
  /** Bytes; a larger conf file is refused. */
  readonly maxFileSize: number;
  readonly allowInsecureConfDir: boolean;
}

/** Every setting, by its sync.conf name; the flag is `--name-with-dashes`, the variable `LINK_ETCD_NAME`. */
export const SYNC_KEYS = [
  'prefix',
  'conflict',
  'state_dir',
  'allow_mass_delete',
  'full_reconcile',
  'max_delete_share',
  'log_level',
  'log_format',
  'http',
  'local_etcd',
  'exec',
  'reload_signal',
  'allow_any_names',
  'max_file_size',
  'allow_insecure_conf_dir',
] as const;
export type SyncKey = (typeof SYNC_KEYS)[number];

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

type Raw = { value: string | boolean; source: string };

const bool = (key: string, raw: Raw): boolean => {
  if (typeof raw.value === 'boolean') return raw.value;
  const value = parseBoolean(raw.value);
  if (value !== undefined) return value;
  throw new SettingsError(key, `Expected \`${key}\` to be a boolean, got \`${raw.value}\``, raw.source);
};

const positive = (key: string, raw: Raw, max = Number.POSITIVE_INFINITY): number => {
  const n = Number(String(raw.value).trim());
  if (String(raw.value).trim() === '' || !Number.isFinite(n) || n <= 0 || n > max) {
    throw new SettingsError(
      key,
      `Expected \`${key}\` to be a number above 0${max < Number.POSITIVE_INFINITY ? ` and at most ${max}` : ''}, got \`${raw.value}\``,
      raw.source,
    );
  }
  return n;
};

const oneOf = <T extends string>(key: string, raw: Raw, choices: readonly T[]): T => {
  const text = String(raw.value).trim();
  if (!(choices as readonly string[]).includes(text)) {
    throw new SettingsError(
      key,
      `Expected \`${key}\` to be one of ${choices.join(', ')}, got \`${text}\``,
      raw.source,
    );
  }
  return text as T;
};

const HOOK_KEYS = ['glob', 'check_cmd', 'reload_cmd', 'wait_min', 'wait_max', 'timeout'] as const;

/**
 * Keys whose value is a shell command, taken exactly as written: in a command,
 * ` ;` separates commands and ` #` starts the shell's own comment.
 */
const COMMAND_KEYS: ReadonlySet<string> = new Set(['exec', 'check_cmd', 'reload_cmd']);

/**
 * A value of sync.conf as meant: link-etcd's own settings file (never
 * mirrored) takes an inline comment after whitespace (`wait_min = 0.5   ; seconds`),
 * but for commands, which the shell reads as written.
 */
function settingValue(key: string, written: string): string {
  return COMMAND_KEYS.has(key) ? written : stripInlineComment(written).value;
}

function hooksOf(
  sections: ReadonlyMap<string, ReadonlyMap<string, string>>,
  source: string,
  warn: (message: string) => void,
): HookSpec[] {
  const hooks: HookSpec[] = [];
  for (const [section, entries] of sections) {
    const m = /^HOOK\s+(\S+)$/.exec(section);
    if (!m) continue;
    const name = m[1] as string;
    for (const key of entries.keys()) {
      if (!(HOOK_KEYS as readonly string[]).includes(key))
        warn(unknownKeyWarning(key, section, source, HOOK_KEYS));
    }
    const get = (k: string) => {
      const v = entries.get(k);
      return v === undefined ? undefined : settingValue(k, v);
    };
    const num = (k: string, fallback: number) => {
      const v = get(k);
      return v === undefined ? fallback : positive(`[${section}] ${k}`, { value: v, source });
    };
    const glob = get('glob');
    if (glob === undefined || glob === '') {
      throw new SettingsError(
        `[${section}] glob`,
        `Hook \`${name}\` needs a \`glob\` of the conf paths it watches`,
        source,
      );
    }
    const checkCmd = get('check_cmd');
    const reloadCmd = get('reload_cmd');
    if (checkCmd === undefined && reloadCmd === undefined) {
      throw new SettingsError(
        `[${section}]`,
        `Hook \`${name}\` needs a \`check_cmd\`, a \`reload_cmd\` or both`,
        source,
      );
    }
    const waitMin = num('wait_min', 0.5);
    const waitMax = num('wait_max', Math.max(5, waitMin));
    if (waitMax < waitMin) {
      throw new SettingsError(
        `[${section}] wait_max`,
        `Hook \`${name}\`: wait_max (${waitMax}) is below wait_min (${waitMin})`,
        source,
      );
    }
    hooks.push({ name, glob, checkCmd, reloadCmd, waitMin, waitMax, timeout: num('timeout', 30) });
  }
  return hooks;
}

/**
 * The daemon's settings from, by precedence: flags, then `LINK_ETCD_*`
 * environment variables, then `$B3J0F_CONF_DIR/link/etcd/sync.conf`
 * (`[SYNC]`, and `[HOOK name]` sections), then defaults. Pure but for
 * reading sync.conf, so SIGHUP can call it again.
 */
export async function loadSyncSettings(
  confDir: string,
  flags: Partial<Record<SyncKey, string | boolean>>,
  env: NodeJS.ProcessEnv = process.env,
  warn: (message: string) => void = (message) => process.stderr.write(`link-etcd: warning: ${message}\n`),
): Promise<SyncSettings> {
  const file = join(confDir, 'link', 'etcd', 'sync.conf');
  let sections: ReadonlyMap<string, ReadonlyMap<string, string>> = new Map();
  try {
    sections = parseIni(await readFile(file, 'utf8'), file).sections;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const fromFile = sections.get('SYNC') ?? new Map<string, string>();
  for (const key of fromFile.keys()) {
    if (!(SYNC_KEYS as readonly string[]).includes(key))
      warn(unknownKeyWarning(key, 'SYNC', file, SYNC_KEYS));
  }
  const pick = (key: SyncKey): Raw | undefined => {
    const flag = flags[key];
    if (flag !== undefined) return { value: flag, source: `--${key.replace(/_/g, '-')}` };
    const name = `LINK_ETCD_${key.toUpperCase()}`;
    const fromEnv = env[name];
    if (fromEnv !== undefined && fromEnv !== '') return { value: fromEnv, source: `$${name}` };
    const v = fromFile.get(key);
    return v === undefined ? undefined : { value: settingValue(key, v), source: file };
  };
  const text = (key: SyncKey): string | undefined => {
    const raw = pick(key);
    return raw === undefined ? undefined : String(raw.value);
  };
  const raw = (key: SyncKey) => pick(key);
  const r = {
    conflict: raw('conflict'),
    allow: raw('allow_mass_delete'),
    full: raw('full_reconcile'),
    share: raw('max_delete_share'),
    level: raw('log_level'),
    format: raw('log_format'),
    local: raw('local_etcd'),
    signal: raw('reload_signal'),
    anyNames: raw('allow_any_names'),
    maxFile: raw('max_file_size'),
    insecure: raw('allow_insecure_conf_dir'),
  };
  const hooks = hooksOf(sections, file, warn);
  await warnUnmatchedGlobs(confDir, hooks, file, warn);
  return {
    prefix: text('prefix') ?? SYNC_DEFAULTS.prefix,
    conflict: r.conflict ? oneOf('conflict', r.conflict, CONFLICT_POLICIES) : SYNC_DEFAULTS.conflict,
    stateDir: text('state_dir'),
    allowMassDelete: r.allow ? bool('allow_mass_delete', r.allow) : SYNC_DEFAULTS.allowMassDelete,
    fullReconcile: r.full ? positive('full_reconcile', r.full) : SYNC_DEFAULTS.fullReconcileSeconds,
    maxDeleteShare: r.share ? positive('max_delete_share', r.share, 1) : SYNC_DEFAULTS.maxDeleteShare,
    logLevel: r.level ? oneOf('log_level', r.level, LOG_LEVELS) : 'info',
    logFormat: r.format ? oneOf('log_format', r.format, ['json', 'pretty'] as const) : undefined,
    http: text('http'),
    localEtcd: r.local ? bool('local_etcd', r.local) : false,
    exec: text('exec'),
    reloadSignal: r.signal ? (oneOf('reload_signal', r.signal, SIGNALS) as NodeJS.Signals) : 'SIGHUP',
    hooks,
    allowAnyNames: r.anyNames ? bool('allow_any_names', r.anyNames) : SYNC_DEFAULTS.allowAnyNames,
    maxFileSize: r.maxFile ? Math.floor(positive('max_file_size', r.maxFile)) : SYNC_DEFAULTS.maxFileBytes,
    allowInsecureConfDir: r.insecure
      ? bool('allow_insecure_conf_dir', r.insecure)
      : SYNC_DEFAULTS.allowInsecureConfDir,
  };
}

const SIGNALS = ['SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGWINCH'] as const;

/** Files looked at, at most, to tell whether a hook's glob matches anything. */
const GLOB_SCAN_LIMIT = 100_000;

/**
 * A hook whose glob matches no conf file now is most likely a typo (or a
 * comment read as part of the value): a warning names it. Not an error: the
 * files may come later, from etcd.
 */
async function warnUnmatchedGlobs(
  confDir: string,
  hooks: readonly HookSpec[],
  source: string,
  warn: (message: string) => void,
): Promise<void> {
  if (hooks.length === 0) return;
  let files: string[];
  try {
    files = (await readdir(confDir, { recursive: true }))
      .slice(0, GLOB_SCAN_LIMIT)
      .map((f) => f.split('\\').join('/'))
      .filter((f) => f.endsWith('.conf') && !f.startsWith('link/etcd/'));
  } catch {
    return;
  }
  for (const hook of hooks) {
    const matches = picomatch(hook.glob, { dot: false });
    if (!files.some((f) => matches(f))) {
      warn(
        `hook \`${hook.name}\` in ${source}: glob \`${hook.glob}\` matches no conf file under ${confDir} yet; its commands run only for files it matches`,
      );
    }
  }
}
