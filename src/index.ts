export {
  Configurable,
  type ConfigurableHandle,
  type ConfigurableOptions,
  configurable,
  configurationOf,
} from './conf/configurable.js';
export { type ConfDriver, type ConfInput, type ConfInputValue, formatValue } from './conf/driver.js';
export { EtcdConfDriver, type EtcdConfDriverOptions } from './conf/etcd-driver.js';
export { IniConfDriver, type IniConfDriverOptions } from './conf/ini-driver.js';
export {
  type Category,
  type ConfDeclaration,
  type Configuration,
  type ConfValues,
  category,
  configuration,
  Parameter,
  type ParameterOptions,
  type ParameterSpec,
  type RawConf,
} from './conf/model.js';
export type { StandardSchemaV1 } from './conf/standard-schema.js';
export type { BuiltinType, JsonValue, ParamType, ValueOf, ValueParser } from './conf/value-types.js';
export {
  ClosedError,
  ClusterMismatchError,
  type ConfIssue,
  ConfValueError,
  EtcdAuthError,
  EtcdAuthRequiredError,
  EtcdCompactedError,
  EtcdKeyError,
  EtcdRequestError,
  EtcdTokenExpiredError,
  EtcdUnavailableError,
  EtcdUnreachableError,
  FileChangedError,
  FileWriteError,
  FutureRevisionError,
  HandleClosedError,
  HookRefusedError,
  IniSyntaxError,
  isRetryable,
  LinkEtcdError,
  type LinkEtcdErrorCode,
  NotReadyError,
  SettingsError,
  UnsafePathError,
  ValueParseError,
} from './errors.js';
export { confDir, middlewareConfPath } from './layout/conf-dir.js';
export { isMirrored } from './layout/mirrored.js';
export { EtcdMiddleware, type MiddlewareOptions } from './middleware/middleware.js';
export {
  type ConnectionOptions,
  DEFAULTS as MIDDLEWARE_DEFAULTS,
  type EtcdSettings,
  loadSettings,
  type SnakeCaseConnectionOptions,
} from './middleware/settings.js';
export type { Tree, TreeInput } from './middleware/tree.js';
export type { EtcdChange, StateEntry, WatchBatch, WatchOptions } from './middleware/watch.js';
export {
  type PassResult,
  type SyncCounters,
  SyncEngine,
  type SyncOptions,
  type SyncReconfiguration,
  type SyncStatus,
} from './sync/engine.js';
export type { Blocked } from './sync/guard.js';
export type { Conflict, ConflictPolicy } from './sync/merge.js';
