/** Watchers the etcd server holds open now: its own gauge, so a test sees cancellations from the server's side. */
export async function serverWatchers(clientUrl: string): Promise<number> {
  const text = await (await fetch(`${clientUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('etcd_debugging_mvcc_watcher_total '));
  if (line === undefined) throw new Error('etcd_debugging_mvcc_watcher_total missing from /metrics');
  return Number(line.split(' ')[1]);
}
