import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { statusPage } from './status-page.js';

export interface Probes {
  /** Ready: etcd answers, the first reconcile is done, no mass deletion is held back, the watch is live. */
  readonly ready: () => Promise<{ ok: boolean; reasons: string[] }>;
  readonly registry: Registry;
  /** `GET /status`: what `link-etcd status --json` prints (status.ts StatusReport). */
  readonly status?: () => Promise<unknown>;
  /** `GET /recent`: the last landed changes each way (status-page.ts RecentReport); with `status`, `/` serves the status page. */
  readonly recent?: () => unknown;
}

/** `HOST:PORT` -> listen arguments; a usage error names the flag. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new Error(`--http expects HOST:PORT (e.g. 127.0.0.1:9477), got \`${value}\``);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/**
 * What one client, or 20,000 idle ones, may hold: the probes and a scraper
 * need a few connections, and a file descriptor held here is one the file
 * side cannot open.
 */
export interface HttpLimits {
  /** Connections open at once; more are closed as soon as they are accepted. Default 64. */
  readonly maxConnections: number;
  /** ms a kept-alive connection may sit idle between requests. Default 5 s. */
  readonly keepAliveTimeoutMs: number;
  /** ms from a connection (or the end of the last response) to a request's full headers. Default 10 s. */
  readonly headersTimeoutMs: number;
  /** ms for a whole request to arrive. Default 10 s. */
  readonly requestTimeoutMs: number;
  /** ms between sweeps that close connections past the two timeouts above. Default 1 s. */
  readonly checkIntervalMs: number;
}

export const HTTP_LIMITS: HttpLimits = {
  maxConnections: 64,
  keepAliveTimeoutMs: 5_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  checkIntervalMs: 1_000,
};

/**
 * `/healthz` (alive), `/readyz` (ready, with the reasons when not), `/status` (JSON), `/metrics`
 * (Prometheus text) and, with `status` and `recent`, the status page at `/` and `/recent` (JSON).
 */
export async function serveHttp(
  listen: { host: string; port: number },
  probes: Probes,
  limits: Partial<HttpLimits> = {},
): Promise<Server> {
  const l = { ...HTTP_LIMITS, ...limits };
  const options = {
    keepAliveTimeout: l.keepAliveTimeoutMs,
    // Node checks these two on a timer, idle connections that never sent a byte included.
    headersTimeout: l.headersTimeoutMs,
    requestTimeout: l.requestTimeoutMs,
    connectionsCheckingInterval: l.checkIntervalMs,
  };
  const server = createServer(options, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    void (async () => {
      if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        const { ok, reasons } = await probes.ready();
        res
          .writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' })
          .end(ok ? 'ready\n' : `${reasons.join('\n')}\n`);
      } else if (path === '/status' && probes.status !== undefined) {
        const body = JSON.stringify(await probes.status());
        res
          .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
          .end(`${body}\n`);
      } else if (path === '/recent' && probes.recent !== undefined) {
        res
          .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
          .end(`${JSON.stringify(probes.recent())}\n`);
      } else if (path === '/' && probes.status !== undefined && probes.recent !== undefined) {
        const page = statusPage();
        res.writeHead(200, page.headers).end(page.body);
      } else if (path === '/metrics') {
        const body = await probes.registry.metrics();
        res.writeHead(200, { 'content-type': probes.registry.contentType }).end(body);
      } else {
        res
          .writeHead(404, { 'content-type': 'text/plain' })
          .end('not found: try /, /healthz, /readyz, /status, /recent or /metrics\n');
      }
    })().catch((error: unknown) => {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(error)}\n`);
    });
  });
  server.maxConnections = l.maxConnections;
  // A socket that sends nothing at all is also closed after headersTimeout; this bounds the rest.
  server.setTimeout(Math.max(l.requestTimeoutMs, l.keepAliveTimeoutMs) * 2, (socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  return server;
}
