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
import { EtcdAuthError, EtcdRequestError, EtcdUnavailableError, LinkEtcdError } from '../errors.js';
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

/** Converts the etcd3/gRPC error zoo into our few classes at the boundary. */
export function toLinkError(error: unknown, endpoints: readonly string[]): LinkEtcdError {
  if (error instanceof LinkEtcdError) return error;
  const err = error instanceof Error ? error : new Error(String(error));
  if (
    err instanceof EtcdAuthenticationFailedError ||
    err instanceof EtcdPermissionDeniedError ||
    err instanceof EtcdInvalidAuthTokenError ||
    err instanceof GRPCUnauthenticatedError
  ) {
    return new EtcdAuthError(err.message.replace(/^\d+ [A-Z_]+: /, ''), { cause: err });
  }
  if (
    err instanceof GRPCUnavailableError ||
    err instanceof GRPCDeadlineExceededError ||
    err.name === 'BrokenCircuitError' ||
    err.name === 'TaskCancelledError'
  ) {
    return new EtcdUnavailableError(endpoints, err.message.split('\n')[0] ?? err.name, { cause: err });
  }
  return new EtcdRequestError(`etcd at ${endpoints.join(', ')} failed the request: ${err.message}`, {
    cause: err,
  });
}

/**
 * Bounds a whole operation, retries included, by `ms`: gRPC deadlines bound
 * each attempt, but with `allow_reconnect` one call may make several.
 */
export function withDeadline<T>(work: Promise<T>, ms: number, endpoints: readonly string[]): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new EtcdUnavailableError(endpoints, `no answer within read_timeout ${ms / 1000} s`)),
      ms,
    );
    timer.unref();
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
