import { resolveSrv } from 'node:dns/promises';
import { SettingsError } from '../errors.js';

export interface SrvRecord {
  readonly name: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
}

export type SrvResolver = (name: string) => Promise<readonly SrvRecord[]>;

/** Members found by DNS SRV, and whether they speak TLS. */
export interface DiscoveredEndpoints {
  readonly hosts: readonly string[];
  readonly secure: boolean;
}

/** Lower priority first; within a priority, heavier weight first (RFC 2782 order, without the lottery). */
export function orderSrvRecords(records: readonly SrvRecord[]): string[] {
  return [...records]
    .sort((a, b) => a.priority - b.priority || b.weight - a.weight || a.name.localeCompare(b.name))
    .map((r) => `${r.name.replace(/\.$/, '')}:${r.port}`);
}

/**
 * Looks up `_etcd-client-ssl._tcp.<domain>` (TLS), then `_etcd-client._tcp.<domain>`,
 * as etcd's own discovery does.
 */
export async function discoverBySrv(
  domain: string,
  source: string,
  resolver: SrvResolver = resolveSrv,
): Promise<DiscoveredEndpoints> {
  const errors: string[] = [];
  for (const [service, secure] of [
    ['_etcd-client-ssl._tcp', true],
    ['_etcd-client._tcp', false],
  ] as const) {
    try {
      const records = await resolver(`${service}.${domain}`);
      if (records.length > 0) return { hosts: orderSrvRecords(records), secure };
    } catch (error) {
      errors.push(
        `${service}.${domain}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      );
    }
  }
  throw new SettingsError(
    'srv_domain',
    `No etcd members found by DNS SRV for \`${domain}\` (${errors.join('; ') || 'no records'}): check the DNS records or set host instead`,
    source,
  );
}
