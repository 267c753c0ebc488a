/** Seconds and count per pass stage, as /metrics reports them (cumulative since the daemon started). */
export type StageTotals = Map<string, { seconds: number; count: number }>;

/** Reads link_etcd_pass_stage_seconds' _sum and _count per stage from a daemon's /metrics. */
export async function stageTotals(http: string): Promise<StageTotals> {
  const text = await (await fetch(`http://${http}/metrics`)).text();
  const totals: StageTotals = new Map();
  for (const m of text.matchAll(/^link_etcd_pass_stage_seconds_(sum|count)\{([^}]*)\} (\S+)$/gm)) {
    const stage = /stage="([^"]+)"/.exec(m[2] as string)?.[1];
    if (stage === undefined) continue;
    const entry = totals.get(stage) ?? { seconds: 0, count: 0 };
    totals.set(stage, entry);
    if (m[1] === 'sum') entry.seconds += Number(m[3]);
    else entry.count += Number(m[3]);
  }
  return totals;
}

/**
 * Mean ms per pass stage between two readings: the passes of one run only,
 * without the initial sync's. With the latency figures beside them they
 * show where a change spends its time inside a pass (the rest is the watch,
 * the event loop and the file event).
 */
export function stageMeans(
  before: StageTotals,
  after: StageTotals,
): Record<string, { ms: number; n: number }> {
  const out: Record<string, { ms: number; n: number }> = {};
  for (const [stage, { seconds, count }] of after) {
    const n = count - (before.get(stage)?.count ?? 0);
    const s = seconds - (before.get(stage)?.seconds ?? 0);
    if (n > 0) out[stage] = { ms: Number(((s * 1000) / n).toFixed(3)), n };
  }
  return out;
}
