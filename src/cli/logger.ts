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
      // What the change lines already say; messages name their file where it matters.
      ignore: 'pid,hostname,name,file,keys,changes,revision',
      messageFormat: (log, messageKey) => changeLines(log) ?? String(log[messageKey] ?? ''),
      sync: true,
    }),
  );
}

const ARROW: Record<string, string> = {
  'written to etcd': 'file -> etcd',
  'written to the file': 'etcd -> file',
};

/**
 * A landed write as a person reads it, one line a key:
 * `shop/database.conf [POSTGRES] pool_size: 10 -> 20 (etcd -> file)`.
 * Values arrive masked (secrets.ts); undefined for any other line.
 */
export function changeLines(log: Record<string, unknown>): string | undefined {
  const arrow = ARROW[String(log.msg)];
  const { file, changes, keys } = log;
  if (arrow === undefined || typeof file !== 'string' || !Array.isArray(changes)) return undefined;
  const lines = changes.map((change) => {
    const [op, key, , from, to] = change as [string, string, string, string | null, string | null];
    const parts = String(key).split('/');
    const name = parts.pop();
    const section = parts.pop();
    const was = from === null || from === undefined ? '(none)' : from;
    const now = op === 'delete' || to === null || to === undefined ? '(deleted)' : to;
    return `${file} [${section}] ${name}: ${was} -> ${now} (${arrow})`;
  });
  const more =
    typeof keys === 'number' && keys > changes.length
      ? `\n  ... and ${keys - changes.length} more keys of ${file}`
      : '';
  return `${lines.join('\n')}${more}`;
}
