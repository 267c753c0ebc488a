import type { ClusterStatus } from '../middleware/middleware.js';

/** What makes a cluster unhealthy for link-etcd, each as one line a person can act on. */
export function doctorProblems(status: ClusterStatus): string[] {
  const problems: string[] = [];
  if (status.leader === '0')
    problems.push('the cluster has no leader: writes will fail until one is elected');
  if (status.members.length % 2 === 0 && status.members.length > 0) {
    problems.push(
      `${status.members.length} members: an even count tolerates no more failures than one member fewer`,
    );
  }
  return problems;
}

export function describeStatus(status: ClusterStatus, problems: readonly string[]): string[] {
  return [
    `endpoints:   ${status.endpoints.join(', ')}${status.tls ? ' (TLS)' : ''}`,
    `settings:    ${status.settingsSource}`,
    ...status.settingsWarnings.map((w) => `  warning: ${w}`),
    `cluster id:  ${status.clusterId} (the value expected_cluster_id takes)`,
    `version:     etcd ${status.version}`,
    `revision:    ${status.revision}`,
    `auth:        ${status.auth}`,
    `round trip:  ${status.latencyMs} ms`,
    `members:     ${status.members.length}`,
    ...status.members.map(
      (m) =>
        `  ${m.leader ? '*' : ' '} ${m.name || '(unstarted)'} ${m.id} ${m.clientURLs.join(', ')}${m.learner ? ' (learner)' : ''}`,
    ),
    problems.length === 0 ? 'healthy' : `UNHEALTHY:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
  ];
}
