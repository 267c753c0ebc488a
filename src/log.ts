import { type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/**
 * The library's default logger: JSON lines on stderr, so an app's stdout
 * stays its own. `LINK_ETCD_LOG_LEVEL` sets the level (default `warn`).
 */
export function defaultLogger(): Logger {
  return pino(
    {
      name: 'link-etcd',
      level: process.env.LINK_ETCD_LOG_LEVEL ?? 'warn',
      redact: { paths: ['password', '*.password'], censor: '***' },
    },
    pino.destination({ fd: 2, sync: false }),
  );
}
