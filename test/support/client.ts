import { Writable } from 'node:stream';
import { pino } from 'pino';
import { EtcdMiddleware, type MiddlewareOptions } from '../../src/index.js';

/** Log lines a test can read back. */
export function captureLogger(level?: string): {
  logger: pino.Logger;
  lines: Array<Record<string, unknown>>;
} {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line !== '') lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: level ?? process.env.LINK_ETCD_LOG_LEVEL ?? 'warn' }, sink), lines };
}

/**
 * A middleware for one test etcd, isolated from the machine's ~/etc: its conf
 * dir does not exist unless the test passes one.
 */
export function clientFor(
  target: { host: string; port: number },
  options: MiddlewareOptions = {},
): EtcdMiddleware {
  return new EtcdMiddleware({
    host: target.host,
    port: target.port,
    confDir: '/nonexistent/link-etcd-test',
    readTimeout: 5,
    logger: captureLogger().logger,
    ...options,
  });
}
