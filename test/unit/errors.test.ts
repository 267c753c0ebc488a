import {
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  GRPCOutOfRangeError,
  GRPCUnauthenticatedError,
  GRPCUnavailableError,
} from 'etcd3';
import { describe, expect, it } from 'vitest';
import {
  ClosedError,
  ClusterMismatchError,
  ConfValueError,
  EtcdAuthError,
  EtcdCompactedError,
  EtcdKeyError,
  EtcdNoSpaceError,
  EtcdRequestError,
  EtcdTokenExpiredError,
  EtcdTooLargeError,
  EtcdUnavailableError,
  ExitError,
  FileChangedError,
  FileWriteError,
  FutureRevisionError,
  HookRefusedError,
  IniSyntaxError,
  isRetryable,
  LinkEtcdError,
  type LinkEtcdErrorCode,
  NotReadyError,
  SettingsError,
  UnsafePathError,
  ValueParseError,
} from '../../src/errors.js';
import { classifyReason, toLinkError } from '../../src/middleware/connection.js';

/** One instance of every class, with the code it must carry. */
const SAMPLES: ReadonlyArray<readonly [LinkEtcdError, LinkEtcdErrorCode]> = [
  [new EtcdKeyError('/a'), 'KEY_NOT_FOUND'],
  [new SettingsError('host', 'bad host', 'middleware.conf'), 'BAD_SETTING'],
  [new IniSyntaxError('a.conf', 3, 'no `=`'), 'BAD_INI'],
  [new EtcdUnavailableError(['127.0.0.1:2379'], 'timeout'), 'ETCD_UNAVAILABLE'],
  [new EtcdAuthError('etcdserver: permission denied'), 'ETCD_AUTH'],
  [new EtcdTokenExpiredError('etcdserver: invalid auth token'), 'ETCD_TOKEN_EXPIRED'],
  [new ClusterMismatchError('aa', 'bb', ['127.0.0.1:2379']), 'CLUSTER_MISMATCH'],
  [new EtcdRequestError('too many operations'), 'ETCD_REQUEST'],
  [new EtcdCompactedError('etcdserver: mvcc: required revision has been compacted'), 'ETCD_COMPACTED'],
  [new FutureRevisionError('etcdserver: mvcc: required revision is a future revision'), 'FUTURE_REVISION'],
  [new EtcdTooLargeError('etcdserver: request is too large'), 'ETCD_TOO_LARGE'],
  [new EtcdNoSpaceError('etcdserver: mvcc: database space exceeded'), 'ETCD_NO_SPACE'],
  [new ClosedError(), 'CLOSED'],
  [new NotReadyError('app.conf', 1000, ['app.conf from EtcdConfDriver']), 'NOT_READY'],
  [
    new ConfValueError([
      { path: '/app', category: 'db', parameter: 'port', raw: 'x', reason: 'not a number' },
    ]),
    'BAD_VALUE',
  ],
  [
    new ConfValueError([
      { path: '/app', category: 'db', parameter: 'port', raw: undefined, reason: 'required' },
    ]),
    'MISSING_PARAMETER',
  ],
  [new ValueParseError('expected an integer'), 'BAD_VALUE'],
  [new FileWriteError('/etc/app/a.conf', 'ENOSPC: no space left on device'), 'FILE_WRITE'],
  [new FileChangedError('/etc/app/a.conf'), 'FILE_CHANGED'],
  [new UnsafePathError('/etc/app/link', 'is a symlink'), 'UNSAFE_PATH'],
  [new HookRefusedError('nginx', 'nginx.conf', 'exit 1'), 'HOOK_REFUSED'],
  [new ExitError(3), 'EXIT'],
];

describe('error classes', () => {
  it.each(SAMPLES.map(([error, code]) => [error.name, code, error] as const))(
    '%s has code %s',
    (name, code, error) => {
      expect(error).toBeInstanceOf(LinkEtcdError);
      expect(error).toBeInstanceOf(Error);
      expect(error.code).toBe(code);
      expect(error.name).toBe(name);
    },
  );

  it('has a class for every code', () => {
    expect([...new Set(SAMPLES.map(([, code]) => code))].sort()).toEqual(Object.keys(RETRYABLE).sort());
  });

  it('keeps the fields and messages callers rely on', () => {
    expect(new ExitError(3).exitCode).toBe(3);
    expect(new FileChangedError('/x/a.conf').file).toBe('/x/a.conf');
    expect(new FileWriteError('/x/a.conf', 'EROFS: read-only file system').message).toBe(
      'cannot write /x/a.conf (EROFS: read-only file system)',
    );
    const refused = new HookRefusedError('nginx', 'nginx.conf', 'exit 1');
    expect(refused.message).toBe(
      'hook nginx: check_cmd refused the new nginx.conf (exit 1): the old file stays',
    );
    expect([refused.hook, refused.file]).toEqual(['nginx', 'nginx.conf']);
  });
});

/** Whether trying again may work, one row per code. */
const RETRYABLE: Record<LinkEtcdErrorCode, boolean> = {
  KEY_NOT_FOUND: true,
  BAD_SETTING: false,
  BAD_INI: true,
  ETCD_UNAVAILABLE: true,
  ETCD_AUTH: false,
  ETCD_TOKEN_EXPIRED: true,
  CLUSTER_MISMATCH: false,
  ETCD_REQUEST: true,
  ETCD_COMPACTED: true,
  ETCD_TOO_LARGE: true,
  ETCD_NO_SPACE: true,
  FUTURE_REVISION: false,
  CLOSED: false,
  NOT_READY: true,
  BAD_VALUE: true,
  MISSING_PARAMETER: true,
  FILE_WRITE: true,
  FILE_CHANGED: true,
  UNSAFE_PATH: true,
  HOOK_REFUSED: true,
  EXIT: false,
};

describe('isRetryable', () => {
  it.each(Object.entries(RETRYABLE))('%s -> %s', (code, retryable) => {
    expect(isRetryable(new LinkEtcdError(code as LinkEtcdErrorCode, 'x'))).toBe(retryable);
  });

  it('retries errors that are not ours', () => {
    expect(isRetryable(new Error('boom'))).toBe(true);
    expect(isRetryable('boom')).toBe(true);
    expect(isRetryable(undefined)).toBe(true);
  });
});

describe('the etcd message table', () => {
  it.each([
    ['etcdserver: mvcc: required revision is a future revision', FutureRevisionError],
    ['etcdserver: mvcc: required revision has been compacted', EtcdCompactedError],
    ['etcdserver: invalid auth token', EtcdTokenExpiredError],
    ['auth token is expired', EtcdTokenExpiredError],
    ['etcdserver: permission denied', EtcdAuthError],
    ['etcdserver: authentication failed, invalid user ID or password', EtcdAuthError],
    ['7 PERMISSION_DENIED: etcdserver: permission denied', EtcdAuthError],
    ['etcdserver: too many operations in txn request', EtcdRequestError],
    ['etcdserver: request is too large', EtcdTooLargeError],
    ['etcdserver: mvcc: database space exceeded', EtcdNoSpaceError],
    ['cancelled by etcd', EtcdRequestError],
  ] as const)('classifyReason(%j) is a %O', (message, type) => {
    const error = classifyReason(message);
    expect(error).toBeInstanceOf(type);
    expect(error.message).toContain(message.replace(/^\d+ [A-Z_]+: /, ''));
  });

  it('is what toLinkError applies to what etcd3 throws', () => {
    const compacted = new GRPCOutOfRangeError(
      '11 OUT_OF_RANGE: etcdserver: mvcc: required revision has been compacted',
    );
    expect(toLinkError(compacted, []).code).toBe('ETCD_COMPACTED');
    expect(toLinkError(new Error('etcdserver: mvcc: required revision is a future revision'), []).code).toBe(
      'FUTURE_REVISION',
    );
    // Token expiry is retryable (a new token), a refusal is not.
    const expired = toLinkError(new EtcdInvalidAuthTokenError('etcdserver: invalid auth token'), []);
    expect(expired).toBeInstanceOf(EtcdTokenExpiredError);
    expect(isRetryable(expired)).toBe(true);
    const denied = toLinkError(new EtcdPermissionDeniedError('etcdserver: permission denied'), []);
    expect(denied).toBeInstanceOf(EtcdAuthError);
    expect(denied.message).toBe(
      'etcd refused the request: etcdserver: permission denied: the user is known but its roles do not allow this; check them (etcdctl user get <user>, etcdctl role get <role>)',
    );
    expect(isRetryable(denied)).toBe(false);
  });

  it('keeps the instanceof classification where the text says nothing', () => {
    expect(
      toLinkError(new GRPCUnauthenticatedError('16 UNAUTHENTICATED: etcdserver: user name is empty'), []),
    ).toBeInstanceOf(EtcdAuthError);
    const down = toLinkError(new GRPCUnavailableError('14 UNAVAILABLE: No connection established'), [
      'h:2379',
    ]);
    expect(down).toBeInstanceOf(EtcdUnavailableError);
    const other = toLinkError(new Error('etcdserver: too many operations in txn request'), ['h:2379']);
    expect(other).toBeInstanceOf(EtcdRequestError);
    expect(other.message).toBe(
      'etcd at h:2379 failed the request: etcdserver: too many operations in txn request',
    );
    const ours = new SettingsError('host', 'bad host', 'middleware.conf');
    expect(toLinkError(ours, [])).toBe(ours);
  });

  it('does not read a Node system error as an etcd answer', () => {
    const eacces = Object.assign(
      new Error("EACCES: permission denied, open '/etc/link-etcd/middleware.conf'"),
      {
        code: 'EACCES',
      },
    );
    expect(toLinkError(eacces, [])).toBeInstanceOf(EtcdRequestError);
  });
});
