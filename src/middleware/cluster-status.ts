import type { Live } from './live.js';

/** The cluster as `clusterStatus()` sees it. */
export interface ClusterStatus {
  readonly endpoints: readonly string[];
  /** Hex, as etcdctl prints it. */
  readonly clusterId: string;
  readonly version: string;
  /** Member id of the leader, hex; `0` when there is none. */
  readonly leader: string;
  readonly revision: number;
  readonly members: ReadonlyArray<{
    readonly id: string;
    readonly name: string;
    readonly clientURLs: readonly string[];
    readonly leader: boolean;
    readonly learner: boolean;
  }>;
  /** `none`, or `user <name>`: credentials in use (never the password). */
  readonly auth: string;
  readonly tls: boolean;
  /** Round trip of one status call. */
  readonly latencyMs: number;
  /** Where the settings came from: the middleware.conf read, or `defaults (no <path>)`. */
  readonly settingsSource: string;
  /** What middleware.conf held that was not used (an unknown key, with the nearest known one). */
  readonly settingsWarnings: readonly string[];
}

/** Behind `clusterStatus`, which documents it. */
export async function readClusterStatus({ conn, settings }: Live): Promise<ClusterStatus> {
  const started = performance.now();
  const status = await conn.maintenance.status();
  const latencyMs = performance.now() - started;
  const members = await conn.cluster.memberList({});
  const leader = status.leader;
  return {
    endpoints: conn.endpoints,
    clusterId: BigInt(status.header.cluster_id).toString(16),
    version: status.version,
    leader: BigInt(leader).toString(16),
    revision: Number(status.header.revision),
    members: members.members.map((m) => ({
      id: BigInt(m.ID).toString(16),
      name: m.name,
      clientURLs: m.clientURLs,
      leader: m.ID === leader,
      learner: m.isLearner,
    })),
    auth: settings.username === undefined ? 'none' : `user ${settings.username}`,
    tls: settings.protocol === 'https',
    latencyMs: Math.round(latencyMs * 100) / 100,
    settingsSource: settings.source,
    settingsWarnings: settings.warnings ?? [],
  };
}
