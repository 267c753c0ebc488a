export {
  ClosedError,
  ClusterMismatchError,
  EtcdAuthError,
  EtcdKeyError,
  EtcdRequestError,
  EtcdUnavailableError,
  IniSyntaxError,
  LinkEtcdError,
  type LinkEtcdErrorCode,
  SettingsError,
} from './errors.js';
export { confDir, middlewareConfPath } from './layout/conf-dir.js';
export { EtcdMiddleware, type MiddlewareOptions } from './middleware/middleware.js';
export {
  type ConnectionOptions,
  DEFAULTS as MIDDLEWARE_DEFAULTS,
  type EtcdSettings,
  loadSettings,
  type SnakeCaseConnectionOptions,
} from './middleware/settings.js';
export type { Tree, TreeInput } from './middleware/tree.js';
export type { EtcdChange, WatchBatch, WatchOptions } from './middleware/watch.js';
