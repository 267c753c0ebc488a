import { readFile } from 'node:fs/promises';
import { inspect } from 'node:util';
import { SettingsError } from '../errors.js';
import { BOOLEAN_DESCRIPTION, parseBoolean } from '../ini/boolean.js';
import { parseIni } from '../ini/parse.js';
import { confDir as defaultConfDir, middlewareConfPath } from '../layout/conf-dir.js';

/**
 * Connection settings: the `[ETCD]` keys of middleware.conf, in camelCase.
 * Every key is also accepted in its file spelling (`read_timeout`) as a
 * constructor option, see {@link MiddlewareOptions}.
 */
export interface ConnectionOptions {
  /** Host, or comma-separated hosts of a cluster; each may carry its own `:port` or `http(s)://`. Default `localhost`. */
  host?: string | readonly string[];
  /** Client port for hosts that do not name one. Default `4001`. */
  port?: number | string;
  /** Discover members by DNS SRV (`_etcd-client-ssl._tcp.<domain>`, then `_etcd-client._tcp.<domain>`); replaces host/port. */
  srvDomain?: string;
  /** Accepted for compatibility with link.etcd 0.4: the v3 API has no version prefix. Default `/v2`. */
  versionPrefix?: string;
  /** Seconds before any call (and `connect`) fails. Default `60`. */
  readTimeout?: number | string;
  /** Accepted for compatibility: gRPC has no HTTP redirects. Default `true`. */
  allowRedirect?: boolean | string;
  /** `https` turns TLS on. Default `http`. */
  protocol?: 'http' | 'https' | string;
  /** Client certificate file (PEM); may hold the private key too. */
  cert?: string;
  /** Private key file for `cert`, when `cert` does not hold it (link-etcd extension). */
  certKey?: string;
  /** CA bundle file (PEM) that signs the server's certificate. Default: the system's roots. */
  caCert?: string;
  /** etcd user; needs `password`. */
  username?: string;
  /** etcd password. Never logged, never printed in an error. */
  password?: string;
  /** Fail over between hosts and retry a call after a drop. Default `false`: a failed call fails. */
  allowReconnect?: boolean | string;
  /** Accepted for compatibility: gRPC connects directly. Default `false`. */
  useProxies?: boolean | string;
  /** Refuse any cluster whose id (hex, as etcdctl prints it) differs. */
  expectedClusterId?: string;
  /** Most calls in flight per host; further calls wait their turn. Default `10`. */
  perHostPoolSize?: number | string;
  /** Most operations in one transaction; keep it at or under etcd's `--max-txn-ops`. Default `128`. */
  maxTxnOps?: number | string;
  /** Keys fetched per range request when reading a tree (bounded under gRPC's 4 MiB limit). Default `1000`. */
  pageSize?: number | string;
}

type CamelToSnake<S extends string> = S extends `${infer C}${infer Rest}`
  ? `${C extends Lowercase<C> ? C : `_${Lowercase<C>}`}${CamelToSnake<Rest>}`
  : S;

/** The same settings under their middleware.conf names (`read_timeout`, `ca_cert`, ...). */
export type SnakeCaseConnectionOptions = {
  [K in keyof ConnectionOptions as CamelToSnake<K>]?: ConnectionOptions[K];
};

/** Resolved, validated settings. */
export interface EtcdSettings {
  readonly hosts: readonly string[];
  readonly srvDomain: string | undefined;
  readonly versionPrefix: string;
  readonly readTimeoutMs: number;
  readonly allowRedirect: boolean;
  readonly protocol: 'http' | 'https';
  readonly cert: string | undefined;
  readonly certKey: string | undefined;
  readonly caCert: string | undefined;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly allowReconnect: boolean;
  readonly useProxies: boolean;
  readonly expectedClusterId: string | undefined;
  readonly perHostPoolSize: number;
  readonly maxTxnOps: number;
  readonly pageSize: number;
  /** The file the settings were read from, for messages. */
  readonly source: string;
  /** What was read but not used (an unknown key, an inline comment): logged as warnings on open. */
  readonly warnings?: readonly string[];
}

export const DEFAULTS = {
  host: 'localhost',
  port: 4001,
  version_prefix: '/v2',
  read_timeout: 60,
  allow_redirect: true,
  protocol: 'http',
  allow_reconnect: false,
  use_proxies: false,
  per_host_pool_size: 10,
  max_txn_ops: 128,
  page_size: 1000,
} as const;

const KEYS = [
  'host',
  'port',
  'srv_domain',
  'version_prefix',
  'read_timeout',
  'allow_redirect',
  'protocol',
  'cert',
  'cert_key',
  'ca_cert',
  'username',
  'password',
  'allow_reconnect',
  'use_proxies',
  'expected_cluster_id',
  'per_host_pool_size',
  'max_txn_ops',
  'page_size',
] as const;
type Key = (typeof KEYS)[number];

type RawValue = string | number | boolean | readonly string[] | undefined;

/** One raw value with where it came from, so an error can name the file or the options. */
interface Sourced {
  readonly value: RawValue;
  readonly source: string;
}

const snakeToCamel = (k: string): string => k.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());

function describe(key: string, value: RawValue): string {
  // The password is the one value an error must never echo.
  if (key === 'password') return '`***`';
  const text = Array.isArray(value) ? value.join(',') : String(value);
  return `\`${text}\` (${typeof value})`;
}

function fail(key: Key, expected: string, raw: Sourced): never {
  throw new SettingsError(
    key,
    `Expected \`${key}\` to be ${expected}, got ${describe(key, raw.value)}`,
    raw.source,
  );
}

function asString(key: Key, raw: Sourced | undefined): string | undefined {
  if (raw === undefined || raw.value === undefined) return undefined;
  if (typeof raw.value !== 'string') fail(key, 'a string', raw);
  const text = raw.value.trim();
  return text === '' ? undefined : text;
}

/** A number given as a number (options) or as text (the file); NaN when it is neither. */
function numberOf(raw: Sourced): number {
  if (typeof raw.value === 'number') return raw.value;
  if (typeof raw.value === 'string' && raw.value.trim() !== '') return Number(raw.value.trim());
  return Number.NaN;
}

function asInt(key: Key, raw: Sourced | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined || raw.value === undefined) return fallback;
  const n = numberOf(raw);
  // `1e3` and `0x10` are numbers to Number(), not integers a person wrote.
  const digits = typeof raw.value !== 'string' || /^\s*\d+\s*$/.test(raw.value);
  if (!digits || !Number.isInteger(n) || n < min || n > max)
    fail(key, `an integer from ${min} to ${max}`, raw);
  return n;
}

function asSeconds(key: Key, raw: Sourced | undefined, fallback: number): number {
  if (raw === undefined || raw.value === undefined) return fallback;
  const n = numberOf(raw);
  if (!Number.isFinite(n) || n <= 0) fail(key, 'a positive number of seconds', raw);
  return n;
}

function asBool(key: Key, raw: Sourced | undefined, fallback: boolean): boolean {
  if (raw === undefined || raw.value === undefined) return fallback;
  if (typeof raw.value === 'boolean') return raw.value;
  const value = typeof raw.value === 'string' ? parseBoolean(raw.value) : undefined;
  return value ?? fail(key, `a boolean (${BOOLEAN_DESCRIPTION})`, raw);
}

/** `host` may be `h`, `h:port`, `[v6]:port` or `http(s)://h:port`; hosts without a port take `port`. */
function parseHosts(raw: Sourced | undefined, port: number): string[] {
  const value = raw?.value ?? DEFAULTS.host;
  const list = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : undefined;
  const sourced: Sourced = raw ?? { value, source: 'defaults' };
  if (list === undefined) fail('host', 'a host name or comma-separated host names', sourced);
  const hosts = list.map((h) => h.trim()).filter((h) => h !== '');
  if (hosts.length === 0) fail('host', 'a host name or comma-separated host names', sourced);
  return hosts.map((h) => {
    const bare = h.replace(/^https?:\/\//, '').replace(/\/+$/, '');
    if (bare === '' || /[\s/]/.test(bare)) fail('host', 'a host name or comma-separated host names', sourced);
    const hasPort = bare.startsWith('[') ? /\]:\d+$/.test(bare) : /^[^:]+:\d+$/.test(bare);
    if (hasPort) return bare;
    // A bare IPv6 address needs brackets before a port can follow it.
    return bare.includes(':') && !bare.startsWith('[') ? `[${bare}]:${port}` : `${bare}:${port}`;
  });
}

function parseClusterId(raw: Sourced | undefined): string | undefined {
  const text = asString('expected_cluster_id', raw);
  if (text === undefined || raw === undefined) return undefined;
  const hex = text.replace(/^0x/i, '').toLowerCase();
  if (!/^[0-9a-f]{1,16}$/.test(hex))
    fail('expected_cluster_id', 'a cluster id in hex, as etcdctl prints it', raw);
  return BigInt(`0x${hex}`).toString(16);
}

/**
 * Validates raw settings (file values as text, option values typed) into
 * {@link EtcdSettings}. Pure: no file is read here, so every rule is testable.
 */
export function resolveSettings(raw: ReadonlyMap<Key, Sourced>, source: string): EtcdSettings {
  const port = asInt('port', raw.get('port'), DEFAULTS.port, 1, 65535);
  const hostValue = raw.get('host')?.value;
  const hostText = Array.isArray(hostValue) ? hostValue.join(',') : String(hostValue ?? '');
  // `host = https://...` says TLS as plainly as `protocol = https`; an explicit protocol still decides.
  const implied = /(^|,)\s*https:\/\//i.test(hostText) ? 'https' : DEFAULTS.protocol;
  const protocol = (asString('protocol', raw.get('protocol')) ?? implied).toLowerCase();
  if (protocol !== 'http' && protocol !== 'https') {
    fail('protocol', '`http` or `https`', raw.get('protocol') ?? { value: protocol, source });
  }
  const username = asString('username', raw.get('username'));
  const password = asString('password', raw.get('password'));
  if ((username === undefined) !== (password === undefined)) {
    const key = username === undefined ? 'username' : 'password';
    throw new SettingsError(key, `\`username\` and \`password\` go together: set \`${key}\` too`, source);
  }
  const settings: EtcdSettings = {
    hosts: parseHosts(raw.get('host'), port),
    srvDomain: asString('srv_domain', raw.get('srv_domain')),
    versionPrefix: asString('version_prefix', raw.get('version_prefix')) ?? DEFAULTS.version_prefix,
    // Timers hold at most 2^31-1 ms (24.8 days); a longer timeout would fire at once.
    readTimeoutMs: Math.min(
      Math.round(asSeconds('read_timeout', raw.get('read_timeout'), DEFAULTS.read_timeout) * 1000),
      2 ** 31 - 1,
    ),
    allowRedirect: asBool('allow_redirect', raw.get('allow_redirect'), DEFAULTS.allow_redirect),
    protocol,
    cert: asString('cert', raw.get('cert')),
    certKey: asString('cert_key', raw.get('cert_key')),
    caCert: asString('ca_cert', raw.get('ca_cert')),
    username,
    password,
    allowReconnect: asBool('allow_reconnect', raw.get('allow_reconnect'), DEFAULTS.allow_reconnect),
    useProxies: asBool('use_proxies', raw.get('use_proxies'), DEFAULTS.use_proxies),
    expectedClusterId: parseClusterId(raw.get('expected_cluster_id')),
    perHostPoolSize: asInt(
      'per_host_pool_size',
      raw.get('per_host_pool_size'),
      DEFAULTS.per_host_pool_size,
      1,
      10_000,
    ),
    maxTxnOps: asInt('max_txn_ops', raw.get('max_txn_ops'), DEFAULTS.max_txn_ops, 1, 1_000_000),
    pageSize: asInt('page_size', raw.get('page_size'), DEFAULTS.page_size, 1, 1_000_000),
    source,
  };
  return redacted(settings);
}

/** Settings with some values replaced, still redacted when printed. */
export function withSettings(settings: EtcdSettings, patch: Partial<EtcdSettings>): EtcdSettings {
  return redacted({ ...settings, ...patch });
}

/** Keeps the password out of `console.log`, `util.inspect` and `JSON.stringify` of the settings. */
function redacted(settings: EtcdSettings): EtcdSettings {
  const hide = (s: EtcdSettings) => ({ ...s, password: s.password === undefined ? undefined : '***' });
  return Object.defineProperties(settings, {
    toJSON: { value: () => hide(settings), enumerable: false },
    [inspect.custom]: { value: () => hide(settings), enumerable: false },
  });
}

/** Where each setting may come from; later sources win. */
export interface SettingsSources {
  /** The conf dir; default `$B3J0F_CONF_DIR` or `~/etc`. */
  readonly confDir?: string;
  /** Explicit options: they override middleware.conf. */
  readonly options?: Readonly<ConnectionOptions & SnakeCaseConnectionOptions>;
}

/** Where settings came from, for a message: the file read, or that there was none. */
export function describeSource(source: string): string {
  const missing = /^defaults \(no (.*)\)$/.exec(source);
  return missing === null
    ? `settings from ${source}`
    : `no middleware.conf at ${missing[1]}: using the defaults, port ${DEFAULTS.port}`;
}

/** Levenshtein distance, for "did you mean" hints. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        (prev[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = row;
  }
  return prev[b.length] as number;
}

/** The known key closest to `key`, when it is close enough to be a misspelling. */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = distance(key.toLowerCase(), k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** The warning for a key no setting has: named, with the nearest known key. */
export function unknownKeyWarning(
  key: string,
  section: string,
  file: string,
  known: readonly string[],
): string {
  const near = nearestKey(key, known);
  return `\`${key}\` in [${section}] of ${file} is not a setting and is ignored${near === undefined ? ` (known: ${known.join(', ')})` : `: did you mean \`${near}\`?`}`;
}

/**
 * link-etcd's own settings files (middleware.conf, sync.conf; never mirrored)
 * take an inline comment after whitespace, `key = value   ; note` or `# note`,
 * where mirrored conf files, read as configparser does, keep it as value text.
 * Returns the value without it, and whether there was one.
 */
export function stripInlineComment(value: string): { value: string; comment: boolean } {
  const m = /(^|\s)[;#]/.exec(value);
  if (m === null) return { value, comment: false };
  return { value: value.slice(0, m.index).trimEnd(), comment: true };
}

/** Keys whose value is taken exactly as written: a password may hold ` ;` or ` #`. */
const VERBATIM_KEYS: ReadonlySet<string> = new Set(['password']);

/**
 * Reads `<confDir>/link/etcd/middleware.conf` (missing file: defaults) and
 * applies the options over it. In the file, a value may end with an inline
 * comment after whitespace (`port = 2379   ; etcd's default`), except
 * `password`, taken as written; an unknown key in `[ETCD]` is a warning
 * naming it and the nearest known key.
 */
export async function loadSettings(sources: SettingsSources = {}): Promise<EtcdSettings> {
  const file = middlewareConfPath(sources.confDir ?? defaultConfDir());
  const raw = new Map<Key, Sourced>();
  const warnings: string[] = [];
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new SettingsError('(file)', `Cannot read middleware settings: ${(error as Error).message}`, file);
    }
  }
  if (text !== undefined) {
    // The reader's errors never quote a line or a value: in this file it may be the password.
    const doc = parseIni(text, file);
    const etcd = doc.sections.get('ETCD');
    for (const [key, written] of etcd ?? []) {
      const name = key.toLowerCase();
      if (!(KEYS as readonly string[]).includes(name)) {
        warnings.push(unknownKeyWarning(key, 'ETCD', file, KEYS));
        continue;
      }
      const value = VERBATIM_KEYS.has(name) ? written : stripInlineComment(written).value;
      raw.set(name as Key, { value, source: file });
    }
  }
  const options = sources.options ?? {};
  for (const key of KEYS) {
    const camel = snakeToCamel(key) as keyof ConnectionOptions;
    const value = (options as Record<string, RawValue>)[camel] ?? (options as Record<string, RawValue>)[key];
    if (value !== undefined) raw.set(key, { value, source: 'the EtcdMiddleware options' });
  }
  const settings = resolveSettings(raw, text === undefined ? `defaults (no ${file})` : file);
  return warnings.length === 0 ? settings : withSettings(settings, { warnings });
}
