import {
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  type IDefaultPolicyContext,
  type IPolicy,
  noop,
  retry,
} from 'cockatiel';
import {
  ClusterClient,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCUnauthenticatedError,
  GRPCUnavailableError,
  isRecoverableError,
  KVClient,
  MaintenanceClient,
} from 'etcd3';
// The pool is not re-exported by etcd3's index; its module is public in the published package.
import { ConnectionPool } from 'etcd3/lib/connection-pool.js';
import {
  EtcdAuthError,
  EtcdAuthRequiredError,
  EtcdCompactedError,
  EtcdNoSpaceError,
  EtcdRequestError,
  EtcdTokenExpiredError,
  EtcdTooLargeError,
  EtcdUnavailableError,
  EtcdUnreachableError,
  FutureRevisionError,
  LinkEtcdError,
} from '../errors.js';
import type { EtcdSettings } from './settings.js';
import type { TlsMaterial } from './tls.js';

/** The pieces of one etcd connection: the pool and the RPC clients over it. */
export interface Connection {
  readonly endpoints: readonly string[];
  readonly pool: ConnectionPool;
  readonly kv: KVClient;
  readonly maintenance: MaintenanceClient;
  readonly cluster: ClusterClient;
}

/**
 * gRPC pings an idle connection so a peer that vanished without a FIN (a
 * dead host, a dropped NAT entry) fails the watch stream within ~15 s instead
 * of never. etcd refuses pings more often than every 5 s (`--grpc-keepalive-min-time`).
 */
export const KEEPALIVE = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
} as const;

export function openConnection(
  settings: EtcdSettings,
  endpoints: readonly string[],
  tls: TlsMaterial | undefined,
): Connection {
  const single = endpoints.length === 1;
  // With one host a circuit breaker only delays recovery; with several it steers calls away from a dead one.
  const hostPolicy = (): IPolicy<IDefaultPolicyContext> =>
    single || !settings.allowReconnect
      ? noop
      : circuitBreaker(handleWhen(isRecoverableError), {
          halfOpenAfter: 1_000,
          breaker: new ConsecutiveBreaker(3),
        });
  const globalPolicy: IPolicy<IDefaultPolicyContext> = settings.allowReconnect
    ? retry(handleWhen(isRecoverableError), {
        maxAttempts: Math.max(3, endpoints.length * 2),
        backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1_000 }),
      })
    : noop;
  const pool = new ConnectionPool({
    hosts: endpoints.map((e) => `${settings.protocol}://${e}`),
    credentials: tls
      ? // grpc-js takes a missing root certificate as "use the system's roots"; etcd3's type is stricter than that.
        ({ rootCertificate: tls.rootCertificate, privateKey: tls.privateKey, certChain: tls.certChain } as {
          rootCertificate: Buffer;
        })
      : undefined,
    auth:
      settings.username !== undefined && settings.password !== undefined
        ? { username: settings.username, password: settings.password }
        : undefined,
    // gRPC's default 4 MiB receive limit is smaller than what etcd sends: a catch-up watch response
    // holds up to 1000 revisions (twice, with prev_kv), and etcd accepts values up to --max-request-bytes.
    grpcOptions: { ...KEEPALIVE, 'grpc.max_receive_message_length': -1 },
    defaultCallOptions: (ctx: { isStream: boolean }) =>
      ctx.isStream ? {} : { deadline: Date.now() + settings.readTimeoutMs },
    faultHandling: { host: hostPolicy, global: globalPolicy },
  });
  return {
    endpoints,
    pool,
    kv: new KVClient(pool),
    maintenance: new MaintenanceClient(pool),
    cluster: new ClusterClient(pool),
  };
}

type FromMessage = (detail: string, options: { cause?: unknown }) => LinkEtcdError;

/**
 * The one place where the text of an etcd answer decides what went wrong (as
 * etcd3's `grpcMessageToError` does): the first pattern the message matches
 * wins. Watch cancel reasons and stream errors carry only text, and etcd3
 * casts compaction and future revisions to generic classes.
 */
const ETCD_MESSAGES: ReadonlyArray<readonly [RegExp, FromMessage]> = [
  // An etcd restart expires every token: get a new one, not an error (checked before the auth row).
  [/invalid auth token|auth token.*(expired|invalid)/i, (d, o) => new EtcdTokenExpiredError(d, o)],
  [/future revision/, (d, o) => new FutureRevisionError(d, o)],
  // An etcd with auth on, asked without credentials: say what is missing, not just "refused".
  [/user name is empty/i, (d, o) => new EtcdAuthRequiredError(d, o)],
  [/request is too large|message larger than max/i, (d, o) => new EtcdTooLargeError(d, o)],
  [/database space exceeded|NOSPACE/, (d, o) => new EtcdNoSpaceError(d, o)],
  [/compacted/, (d, o) => new EtcdCompactedError(d, o)],
];

/**
 * Read only where text is all there is (a watch's cancel reason): an error
 * object's class says more reliably whether etcd refused us, and a proxy's
 * "permission denied" must not stop the daemon for good.
 */
const AUTH_REASON: readonly [RegExp, FromMessage] = [
  /permission denied|authentication failed/i,
  (d, o) => new EtcdAuthError(d, o),
];

/** `7 PERMISSION_DENIED: etcdserver: permission denied` -> `etcdserver: permission denied`. */
function detailOf(message: string): string {
  return message.replace(/^\d+ [A-Z_]+: /, '');
}

function fromMessage(message: string, cause: unknown): LinkEtcdError | undefined {
  for (const [pattern, make] of ETCD_MESSAGES) {
    if (pattern.test(message)) return make(detailOf(message), { cause });
  }
  return undefined;
}

/** What an etcd message alone says went wrong (a watch's cancel reason, a stream's error): EtcdRequestError when the table does not know it. */
export function classifyReason(message: string): LinkEtcdError {
  const known = fromMessage(message, undefined);
  if (known) return known;
  if (AUTH_REASON[0].test(message)) return AUTH_REASON[1](detailOf(message), {});
  return new EtcdRequestError(`etcd failed the request: ${message}`);
}

/**
 * gRPC's connection failure, readable: `14 UNAVAILABLE: No connection established. Last error:
 * connect ECONNREFUSED 127.0.0.1:4001 (2026-...). Resolution note: ` -> `connect ECONNREFUSED 127.0.0.1:4001`.
 */
export function cleanGrpcDetail(message: string): string {
  const first = detailOf(message.split('\n')[0] ?? message);
  const cleaned = first
    .replace(/\s*\(?\.?\s*Resolution note:.*$/s, '')
    .replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)/g, '')
    .replace(/^No connection established\. Last error: /, '')
    .replace(/[\s.]+$/, '');
  return cleaned === '' ? first : cleaned;
}

/**
 * Converts the etcd3/gRPC error zoo into our few classes at the boundary.
 * With `settingsSource` (the middleware.conf read), an unreachable etcd is an
 * {@link EtcdUnreachableError} that names it.
 */
export function toLinkError(
  error: unknown,
  endpoints: readonly string[],
  settingsSource?: string,
): LinkEtcdError {
  if (error instanceof LinkEtcdError) return error;
  const err = error instanceof Error ? error : new Error(String(error));
  if (
    err instanceof GRPCUnavailableError ||
    err instanceof GRPCDeadlineExceededError ||
    err.name === 'BrokenCircuitError' ||
    err.name === 'TaskCancelledError'
  ) {
    const detail = cleanGrpcDetail(err.message) || err.name;
    return settingsSource === undefined
      ? new EtcdUnavailableError(endpoints, detail, { cause: err })
      : new EtcdUnreachableError(endpoints, detail, settingsSource, { cause: err });
  }
  if (err instanceof EtcdInvalidAuthTokenError) {
    return new EtcdTokenExpiredError(detailOf(err.message), { cause: err });
  }
  if (
    err instanceof EtcdAuthenticationFailedError ||
    err instanceof EtcdPermissionDeniedError ||
    err instanceof GRPCUnauthenticatedError
  ) {
    return new EtcdAuthError(detailOf(err.message), { cause: err });
  }
  // A Node system error (`EACCES: permission denied, open ...`) is not an answer of etcd's: the table does not read it.
  const fromNode = typeof (err as NodeJS.ErrnoException).code === 'string';
  const known = fromNode ? undefined : fromMessage(err.message, err);
  if (known) return known;
  return new EtcdRequestError(`etcd at ${endpoints.join(', ')} failed the request: ${err.message}`, {
    cause: err,
  });
}

/**
 * Bounds a whole operation, retries included, by `ms`: gRPC deadlines bound
 * each attempt, but with `allow_reconnect` one call may make several.
 */
export function withDeadline<T>(
  work: Promise<T>,
  ms: number,
  endpoints: readonly string[],
  settingsSource?: string,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const detail = `no answer within read_timeout ${ms / 1000} s`;
      reject(
        settingsSource === undefined
          ? new EtcdUnavailableError(endpoints, detail)
          : new EtcdUnreachableError(endpoints, detail, settingsSource),
      );
    }, ms);
    timer.unref();
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
