import { type Logger, pino } from 'pino';
import pretty from 'pino-pretty';

export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * The CLI's logger: JSON lines on stdout (for log shippers), or readable
 * lines when asked or when stdout is a terminal. A `password` field is
 * censored; the engine never puts values of secret-looking keys in a log.
 */
export function cliLogger(level: string, format: LogFormat | undefined): Logger {
  const options = {
    name: 'link-etcd',
    level,
    redact: { paths: ['password', '*.password'], censor: '***' },
  };
  const chosen = format ?? (process.stdout.isTTY ? 'pretty' : 'json');
  if (chosen === 'json') return pino(options);
  return pino(
    options,
    pretty({
      colorize: process.stdout.isTTY === true,
      translateTime: 'HH:MM:ss.l',
      ignore: 'pid,hostname,name',
      sync: true,
    }),
  );
}
