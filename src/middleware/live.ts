import { ClusterMismatchError } from '../errors.js';
import type { Logger } from '../log.js';
import { type Connection, openConnection, toLinkError, withDeadline } from './connection.js';
import { Gate } from './gate.js';
import {
  type ConnectionOptions,
  type EtcdSettings,
  loadSettings,
  type SnakeCaseConnectionOptions,
  withSettings,
} from './settings.js';
import { discoverBySrv, type SrvResolver } from './srv.js';
import { loadTlsMaterial } from './tls.js';

/** `MiddlewareOptions` documents these; spelled out here so this file does not import middleware.ts. */
export type LiveOptions = ConnectionOptions &
  SnakeCaseConnectionOptions & {
    readonly confDir?: string;
    readonly endpoints?: string | readonly string[];
    readonly srvResolver?: SrvResolver;
    /** Where settings warnings (an unknown key in middleware.conf) go. */
    readonly logger?: Logger;
  };

export interface Live {
  readonly settings: EtcdSettings;
  readonly conn: Connection;
  readonly gate: Gate;
  /** Resolves once the cluster answered and matched `expected_cluster_id`. */
  verified?: Promise<void>;
}

/** Asks etcd nothing: {@link verifyLive} does, apart, so a failed check is retried on the same pool. */
export async function openLive(given: LiveOptions): Promise<Live> {
  const { endpoints, ...options } = given;
  const urls = typeof endpoints === 'string' ? endpoints.split(',') : endpoints;
  const fromUrls =
    urls === undefined
      ? {}
      : {
          host: urls.map((u) => u.trim()).filter((u) => u !== ''),
          protocol: urls.some((u) => u.trim().startsWith('https://')) ? 'https' : 'http',
        };
  let settings = await loadSettings({ confDir: options.confDir, options: { ...options, ...fromUrls } });
  for (const warning of settings.warnings ?? []) given.logger?.warn({ source: settings.source }, warning);
  let hosts = settings.hosts;
  if (settings.srvDomain !== undefined && urls === undefined) {
    const found = await discoverBySrv(settings.srvDomain, settings.source, given.srvResolver);
    hosts = found.hosts;
    if (found.secure) settings = withSettings(settings, { protocol: 'https' });
  }
  const tls = await loadTlsMaterial(settings);
  const conn = openConnection(settings, hosts, tls);
  return { settings, conn, gate: new Gate(settings.perHostPoolSize * hosts.length) };
}

/** Once per connection, and awaited by every call and watch: the wrong cluster is refused before any read or write. */
export function verifyLive(live: Live): Promise<void> {
  live.verified ??= (async () => {
    const status = await bounded(live, () => live.conn.maintenance.status());
    const expected = live.settings.expectedClusterId;
    if (expected === undefined) return;
    const actual = BigInt(status.header.cluster_id).toString(16);
    if (actual !== expected) throw new ClusterMismatchError(expected, actual, live.conn.endpoints);
  })();
  // A failed check is retried on the next call: etcd may come up, or the file be fixed.
  const check = live.verified;
  check.catch(() => {
    if (live.verified === check) live.verified = undefined;
  });
  return check;
}

/** Every request goes through here, so none hangs past read_timeout or leaks an etcd3 error class. */
export function bounded<T>(live: Live, work: () => Promise<T>): Promise<T> {
  const { conn, settings } = live;
  return live.gate
    .run(() => withDeadline(work(), settings.readTimeoutMs, conn.endpoints, settings.source))
    .catch((error: unknown) => {
      throw toLinkError(error, conn.endpoints, settings.source);
    });
}
