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
  | 'CLUSTER_MISMATCH'
  | 'ETCD_REQUEST'
  | 'CLOSED'
  | 'BAD_VALUE'
  | 'MISSING_PARAMETER'
  | 'FILE_WRITE';

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
      `etcd refused the request: ${detail}: check username/password or certificates`,
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
  return i.raw === undefined ? `${where}: ${i.reason}` : `${where} = \`${i.raw}\`: ${i.reason}`;
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
