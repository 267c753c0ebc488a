import { maskValue } from './secrets.js';

/**
 * Every failure link-etcd reports is a `LinkEtcdError` with a stable `code`, so
 * callers (and the CLI's single catch) can branch on the code, not the text.
 */
export type LinkEtcdErrorCode =
  | 'KEY_NOT_FOUND'
  | 'BAD_SETTING'
  | 'BAD_INI'
  | 'ETCD_UNAVAILABLE'
  | 'ETCD_AUTH'
  | 'ETCD_TOKEN_EXPIRED'
  | 'CLUSTER_MISMATCH'
  | 'ETCD_REQUEST'
  | 'ETCD_COMPACTED'
  | 'ETCD_TOO_LARGE'
  | 'ETCD_NO_SPACE'
  | 'FUTURE_REVISION'
  | 'CLOSED'
  | 'NOT_READY'
  | 'BAD_VALUE'
  | 'MISSING_PARAMETER'
  | 'FILE_WRITE'
  | 'FILE_CHANGED'
  | 'UNSAFE_PATH'
  | 'HOOK_REFUSED'
  | 'EXIT';

/**
 * Failures no retry can fix: a wrong setting, refused credentials, the wrong
 * cluster, a closed client, a revision etcd has never reached. Everything
 * else (an unreachable etcd, a file saved under us, a full disk, a hook that
 * said no) may pass, so the engine and the watch try again later.
 */
const TERMINAL: ReadonlySet<LinkEtcdErrorCode> = new Set<LinkEtcdErrorCode>([
  'BAD_SETTING',
  'ETCD_AUTH',
  'CLUSTER_MISMATCH',
  'CLOSED',
  'FUTURE_REVISION',
  'EXIT',
]);

/** Whether trying the same thing again later may work. Errors that are not ours are retried. */
export function isRetryable(error: unknown): boolean {
  return !(error instanceof LinkEtcdError && TERMINAL.has(error.code));
}

export class LinkEtcdError extends Error {
  readonly code: LinkEtcdErrorCode;

  constructor(code: LinkEtcdErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The path has no key and no children in etcd (the `KeyError` of the Python original). */
export class EtcdKeyError extends LinkEtcdError {
  readonly path: string;

  constructor(path: string) {
    super('KEY_NOT_FOUND', `No key at \`${path}\` in etcd: write it first or check the path`);
    this.path = path;
  }
}

/** A setting of middleware.conf (or of the constructor options) has a value we cannot use. */
export class SettingsError extends LinkEtcdError {
  readonly key: string;
  readonly source: string;

  constructor(key: string, message: string, source: string) {
    super('BAD_SETTING', `${message} in ${source}`);
    this.key = key;
    this.source = source;
  }
}

/** An INI file has a line that is neither a section, a comment, a blank nor `key = value`. */
export class IniSyntaxError extends LinkEtcdError {
  readonly file: string;
  readonly line: number;

  constructor(file: string, line: number, reason: string) {
    super('BAD_INI', `${file}:${line}: ${reason}`);
    this.file = file;
    this.line = line;
  }
}

/** No endpoint answered in time. Retrying later may work. */
export class EtcdUnavailableError extends LinkEtcdError {
  readonly endpoints: readonly string[];

  constructor(endpoints: readonly string[], detail: string, options?: { cause?: unknown }) {
    super(
      'ETCD_UNAVAILABLE',
      `etcd at ${endpoints.join(', ')} is unreachable (${detail}): check that etcd runs there, or set host/port in middleware.conf`,
      options,
    );
    this.endpoints = endpoints;
  }
}

/** etcd refused our credentials or our permissions. Retrying will not help. */
export class EtcdAuthError extends LinkEtcdError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super(
      'ETCD_AUTH',
      // Refused credentials and a role that may not do this are fixed in different places.
      /permission denied/i.test(detail)
        ? `etcd refused the request: ${detail}: the user is known but its roles do not allow this; check them (etcdctl user get <user>, etcdctl role get <role>)`
        : `etcd refused the request: ${detail}: check username/password or certificates`,
      options,
    );
  }
}

/** The cluster we reached is not the one middleware.conf's `expected_cluster_id` names. */
export class ClusterMismatchError extends LinkEtcdError {
  readonly expected: string;
  readonly actual: string;

  constructor(expected: string, actual: string, endpoints: readonly string[]) {
    super(
      'CLUSTER_MISMATCH',
      `etcd at ${endpoints.join(', ')} belongs to cluster ${actual}, not the expected ${expected}: refusing to use it (fix host or expected_cluster_id)`,
    );
    this.expected = expected;
    this.actual = actual;
  }
}

/** etcd answered with an error we do not classify further (bad request, too many ops, ...). */
export class EtcdRequestError extends LinkEtcdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ETCD_REQUEST', message, options);
  }
}

/** etcd expired our auth token (an etcd restart does): a new token, then the same request again. */
export class EtcdTokenExpiredError extends LinkEtcdError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super('ETCD_TOKEN_EXPIRED', `etcd expired the auth token (${detail}): getting a new one`, options);
  }
}

/** The revision asked for was compacted away: read the state again instead of the history. */
export class EtcdCompactedError extends LinkEtcdError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super(
      'ETCD_COMPACTED',
      `etcd compacted the revision asked for (${detail}): read the current state instead of that revision`,
      options,
    );
  }
}

/** etcd refused a request over its size limit (`--max-request-bytes`, 1.5 MiB by default). */
export class EtcdTooLargeError extends LinkEtcdError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super(
      'ETCD_TOO_LARGE',
      `etcd refused a request over its size limit (${detail}): make the value smaller or raise etcd's --max-request-bytes`,
      options,
    );
  }
}

/** etcd's NOSPACE alarm: its database reached --quota-backend-bytes; only deletions go through. */
export class EtcdNoSpaceError extends LinkEtcdError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super(
      'ETCD_NO_SPACE',
      `etcd is out of space (${detail}): compact and defragment it, then disarm the alarm (etcdctl alarm disarm)`,
      options,
    );
  }
}

/** A revision etcd has not reached: this etcd is not the one the revision came from (wiped, restored). */
export class FutureRevisionError extends LinkEtcdError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super(
      'FUTURE_REVISION',
      `etcd has not reached the revision asked for (${detail}): it was wiped or restored from a snapshot; restart link-etcd`,
      options,
    );
  }
}

/** The middleware was closed; open a new one. */
export class ClosedError extends LinkEtcdError {
  constructor() {
    super('CLOSED', 'The EtcdMiddleware is closed: create a new one');
  }
}

/** One parameter whose stored text is not a value of its type, or a required one that is missing. */
export interface ConfIssue {
  readonly path: string;
  readonly category: string;
  readonly parameter: string;
  /** The stored text; undefined when the parameter is missing. */
  readonly raw: string | undefined;
  readonly reason: string;
}

function describeIssue(i: ConfIssue): string {
  const where = `${i.path} [${i.category}] ${i.parameter}`;
  // The message reaches logs and errors$: a password that fails to parse must not be quoted there.
  const raw = i.raw === undefined ? undefined : maskValue(i.parameter, i.raw);
  return raw === undefined ? `${where}: ${i.reason}` : `${where} = \`${raw}\`: ${i.reason}`;
}

/** Stored configuration that does not fit its declaration (`BAD_VALUE`, or `MISSING_PARAMETER` when only required ones lack). */
export class ConfValueError extends LinkEtcdError {
  readonly issues: readonly ConfIssue[];

  constructor(issues: readonly ConfIssue[]) {
    const missingOnly = issues.every((i) => i.raw === undefined);
    super(missingOnly ? 'MISSING_PARAMETER' : 'BAD_VALUE', issues.map(describeIssue).join('; '));
    this.issues = issues;
  }
}

/** A conf file could not be written (a full disk, a read-only folder): the old file stays, the next pass tries again. */
export class FileWriteError extends LinkEtcdError {
  readonly file: string;

  constructor(file: string, detail: string, options?: { cause?: unknown }) {
    super('FILE_WRITE', `cannot write ${file} (${detail})`, options);
    this.file = file;
  }
}

/** A file changed between the read a write was planned on and the write: nothing was replaced, plan again. */
export class FileChangedError extends LinkEtcdError {
  readonly file: string;

  constructor(file: string) {
    super('FILE_CHANGED', `${file} changed while link-etcd was writing it: it will be merged again`);
    this.file = file;
  }
}

/** A path that would lead out of the conf dir or through a symlink: link-etcd neither reads nor writes it. */
export class UnsafePathError extends LinkEtcdError {
  readonly file: string;

  constructor(file: string, reason: string) {
    super('UNSAFE_PATH', `${file} ${reason}`);
    this.file = file;
  }
}

/** A check_cmd hook said no to a staged file: the old file stays. */
export class HookRefusedError extends LinkEtcdError {
  readonly hook: string;
  readonly file: string;

  constructor(hook: string, file: string, detail: string) {
    super('HOOK_REFUSED', `hook ${hook}: check_cmd refused the new ${file} (${detail}): the old file stays`);
    this.hook = hook;
    this.file = file;
  }
}

/** Raw text that is not a value of its parameter's type; the reason becomes a ConfIssue. */
export class ValueParseError extends LinkEtcdError {
  constructor(reason: string) {
    super('BAD_VALUE', reason);
  }
}

/** Carries a non-zero exit code out of a command that already reported why, so nothing is printed twice. */
export class ExitError extends LinkEtcdError {
  readonly exitCode: number;

  constructor(exitCode: number) {
    super('EXIT', `exited with ${exitCode}`);
    this.exitCode = exitCode;
  }
}

/** A configuration was not complete within its deadline: names what it still waited for. */
export class NotReadyError extends LinkEtcdError {
  readonly waitingFor: readonly string[];

  constructor(paths: string, ms: number, waitingFor: readonly string[]) {
    super(
      'NOT_READY',
      `${paths}: no complete configuration within ${ms / 1000} s; still waiting for ${waitingFor.join('; ')}`,
    );
    this.waitingFor = waitingFor;
  }
}

/** A configuration handle was closed: its `ready()` can no longer resolve. */
export class HandleClosedError extends ClosedError {
  constructor(what: string) {
    super();
    this.message = `The configuration handle of ${what} is closed: create a new one (configurable(), or configurationOf() after a new instance)`;
  }
}

/** etcd did not answer: the message also says where the settings came from and etcd's own default port. */
export class EtcdUnreachableError extends EtcdUnavailableError {
  /** The middleware.conf read, or `defaults (no <path>)`. */
  readonly settingsSource: string;

  constructor(
    endpoints: readonly string[],
    detail: string,
    settingsSource: string,
    options?: { cause?: unknown },
  ) {
    super(endpoints, detail, options);
    this.settingsSource = settingsSource;
    const missing = /^defaults \(no (.*)\)$/.exec(settingsSource);
    const where =
      missing === null
        ? `settings from ${settingsSource}`
        : `no middleware.conf at ${missing[1]}: using the defaults, port 4001`;
    this.message = `etcd at ${endpoints.join(', ')} is unreachable (${detail}); ${where}. Check that etcd runs there, or set host/port in ${missing === null ? settingsSource : missing[1]} ([ETCD] port = 2379 is etcd's own default client port; link-etcd keeps link.etcd's default, 4001)`;
  }
}

/** An etcd with authentication on was asked without credentials ("user name is empty"). */
export class EtcdAuthRequiredError extends EtcdAuthError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super(detail, options);
    this.message = `etcd refused the request: ${detail}: this etcd has authentication on; set username and password in middleware.conf ([ETCD]) or the EtcdMiddleware options`;
  }
}
