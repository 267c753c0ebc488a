import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface Probes {
  /** Ready: etcd answers, the first reconcile is done, no mass deletion is held back, the watch is live. */
  readonly ready: () => Promise<{ ok: boolean; reasons: string[] }>;
  readonly registry: Registry;
}

/** `HOST:PORT` -> listen arguments; a usage error names the flag. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new Error(`--http expects HOST:PORT (e.g. 127.0.0.1:9477), got \`${value}\``);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** `/healthz` (alive), `/readyz` (ready, with the reasons when not) and `/metrics` (Prometheus text). */
export async function serveHttp(listen: { host: string; port: number }, probes: Probes): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    void (async () => {
      if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        const { ok, reasons } = await probes.ready();
        res
          .writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' })
          .end(ok ? 'ready\n' : `${reasons.join('\n')}\n`);
      } else if (path === '/metrics') {
        const body = await probes.registry.metrics();
        res.writeHead(200, { 'content-type': probes.registry.contentType }).end(body);
      } else {
        res
          .writeHead(404, { 'content-type': 'text/plain' })
          .end('not found: try /healthz, /readyz or /metrics\n');
      }
    })().catch((error: unknown) => {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(error)}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  return server;
}
