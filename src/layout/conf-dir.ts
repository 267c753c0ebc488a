import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * The configuration directory: `$B3J0F_CONF_DIR`, else `~/etc` as in b3j0f.conf.
 * Resolved on every call so a process that changes its environment is honoured.
 */
export function confDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.B3J0F_CONF_DIR;
  return resolve(fromEnv !== undefined && fromEnv !== '' ? fromEnv : join(homedir(), 'etc'));
}

/** Where the middleware's own settings live: never mirrored by the sync daemon. */
export function middlewareConfPath(dir: string = confDir()): string {
  return join(dir, 'link', 'etcd', 'middleware.conf');
}
