import {
  BehaviorSubject,
  catchError,
  combineLatest,
  EMPTY,
  EmptyError,
  filter,
  firstValueFrom,
  map,
  merge,
  type Observable,
  retry,
  Subject,
  type Subscription,
  tap,
  timer,
} from 'rxjs';
import {
  ConfValueError,
  HandleClosedError,
  LinkEtcdError as LinkError,
  type LinkEtcdError,
  NotReadyError,
} from '../errors.js';
import { defaultLogger, type Logger } from '../log.js';
import { EtcdMiddleware } from '../middleware/middleware.js';
import { DEFAULTS, describeSource, type EtcdSettings } from '../middleware/settings.js';
import type { ConfDriver } from './driver.js';
import { type ConfDeclaration, type ConfValues, categoriesOf, type RawConf } from './model.js';
import { layerRaw } from './resolve.js';
import { typedConf } from './typed-stream.js';

export interface ConfigurableOptions<D extends ConfDeclaration> {
  /** One configuration path or several; later paths override earlier ones, per parameter. */
  paths: string | readonly string[];
  /** The declaration: a category or a configuration. */
  conf: D;
  /** Where to read; later drivers override earlier ones, per parameter. */
  drivers: readonly ConfDriver[];
  logger?: Logger;
  /**
   * Seconds `ready()` waits for a complete first configuration before it rejects
   * with `NOT_READY`. Default: the longest `read_timeout` of the etcd drivers'
   * middleware (middleware.conf, 60 s by default).
   */
  readyTimeout?: number;
}

/** A live configuration: its current value, its changes and its errors. */
export interface ConfigurableHandle<D extends ConfDeclaration> {
  /** The last good configuration, or undefined until the first one is read. */
  readonly current: ConfValues<D> | undefined;
  /** The current configuration at subscription (once known), then every change. */
  readonly changes$: Observable<ConfValues<D>>;
  /** Values or files that did not parse, missing required parameters, unreachable sources. */
  readonly errors$: Observable<LinkEtcdError>;
  /**
   * Resolves with the first complete configuration. Rejects with a `NotReadyError`
   * (`NOT_READY`, naming the layers and parameters still missing) after
   * `readyTimeout` seconds, and with `CLOSED` once the handle is closed.
   */
  ready(): Promise<ConfValues<D>>;
  /** Stops watching; the drivers stay open (they may be shared). */
  close(): void;
}

const RETRY_MS = 1_000;
const LAYER_WAIT_MS = 5_000;

/** Watches `conf` at `paths` through `drivers`, layered, and keeps the result current. */
export function configurable<D extends ConfDeclaration>(
  options: ConfigurableOptions<D>,
): ConfigurableHandle<D> {
  const logger = options.logger ?? defaultLogger();
  const paths = typeof options.paths === 'string' ? [options.paths] : [...options.paths];
  const label = paths.join(', ');
  const errors = new Subject<LinkEtcdError>();
  const report = (error: LinkEtcdError): void => {
    logger.error({ err: { code: error.code, message: error.message }, paths }, error.message);
    errors.next(error);
  };

  // Each layer keeps retrying on its own. All layers are needed for a first configuration (a partial
  // one could be wrong), so a layer that stays silent is reported rather than skipped.
  const answered = new Set<string>();
  const layerNames: { name: string; driver: ConfDriver }[] = [];
  const layers: Observable<RawConf>[] = paths.flatMap((path) =>
    options.drivers.map((driver) => {
      const name = `${path} from ${describeDriver(driver)}`;
      layerNames.push({ name, driver });
      let waiting: NodeJS.Timeout | undefined;
      return driver.watch(path).pipe(
        tap({
          subscribe: () => {
            waiting = setTimeout(
              () =>
                report(
                  new LinkError(
                    'ETCD_UNAVAILABLE',
                    `${path}: ${driver.constructor.name} gave no configuration within ${LAYER_WAIT_MS / 1000} s; still waiting for it`,
                  ),
                ),
              LAYER_WAIT_MS,
            );
            waiting.unref();
          },
          next: () => {
            answered.add(name);
            clearTimeout(waiting);
          },
          finalize: () => clearTimeout(waiting),
        }),
        catchError((error: unknown) => {
          report(error instanceof LinkError ? error : new LinkError('ETCD_REQUEST', String(error)));
          throw error;
        }),
        retry({ delay: () => timer(RETRY_MS) }),
      );
    }),
  );
  // The required parameters the last merged configuration lacked: what ready() names when it gives up.
  let missing: string[] = [];
  const reportTyped = (error: ConfValueError): void => {
    missing = error.issues
      .filter((i) => i.raw === undefined)
      .map((i) => `required [${i.category}] ${i.parameter}`);
    report(error);
  };
  const current = new BehaviorSubject<ConfValues<D> | undefined>(undefined);
  const typed$ =
    layers.length === 0
      ? EMPTY
      : typedConf(combineLatest(layers).pipe(map(layerRaw)), options.conf, label, reportTyped);
  const subscription: Subscription = typed$.subscribe(current);
  // A driver's own value errors come from its typed watches (another subscriber's, when it is
  // shared): this handle reports the values it reads itself, once. Files that do not parse and
  // unreachable sources still come from the drivers.
  const driverErrors = merge(...options.drivers.map((d) => d.errors$)).pipe(
    filter((e) => !(e instanceof ConfValueError)),
  );
  // A BehaviorSubject replays its value to each subscriber: early or late, every one gets the current configuration.
  const known$ = current.pipe(filter((v): v is ConfValues<D> => v !== undefined));
  let closed = false;

  const where = new Map<ConfDriver, string>();
  const etcdSettings = async (): Promise<EtcdSettings[]> => {
    const out: EtcdSettings[] = [];
    for (const driver of options.drivers) {
      const mw = driver.resource();
      if (!(mw instanceof EtcdMiddleware)) continue;
      const settings = await mw.settings().catch(() => undefined);
      if (settings === undefined) continue;
      out.push(settings);
      where.set(driver, `etcd at ${settings.hosts.join(', ')}; ${describeSource(settings.source)}`);
    }
    return out;
  };

  const readyTimeoutMs = async (): Promise<number> => {
    if (options.readyTimeout !== undefined) {
      await etcdSettings();
      return Math.min(options.readyTimeout * 1000, 2 ** 31 - 1);
    }
    let ms = 0;
    for (const settings of await etcdSettings()) ms = Math.max(ms, settings.readTimeoutMs);
    return ms === 0 ? DEFAULTS.read_timeout * 1000 : ms;
  };

  const ready = async (): Promise<ConfValues<D>> => {
    if (closed) throw new HandleClosedError(label);
    if (current.value !== undefined) return current.value;
    const ms = await readyTimeoutMs();
    let timer: NodeJS.Timeout | undefined;
    const first = firstValueFrom(known$).catch((error: unknown) => {
      throw error instanceof EmptyError ? new HandleClosedError(label) : error;
    });
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const silent = layerNames
          .filter((l) => !answered.has(l.name))
          .map((l) => (where.has(l.driver) ? `${l.name} (${where.get(l.driver)})` : l.name));
        const waitingFor = [...silent, ...(silent.length === 0 ? missing : [])];
        reject(new NotReadyError(label, ms, waitingFor.length > 0 ? waitingFor : ['a first configuration']));
      }, ms);
    });
    try {
      return await Promise.race([first, deadline]);
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    get current() {
      return current.value;
    },
    changes$: known$,
    errors$: merge(errors, driverErrors),
    ready,
    close: () => {
      closed = true;
      subscription.unsubscribe();
      current.complete();
      errors.complete();
    },
  };
}

/** A layer's source for messages: the driver, and for etcd the endpoints and the settings file. */
function describeDriver(driver: ConfDriver): string {
  const resource = driver.resource();
  if (typeof resource === 'string') return `${driver.constructor.name} (${resource})`;
  return driver.constructor.name;
}

/** Every parameter name of a declaration with its default, flattened across categories (later ones win). */
function defaultsOf(conf: ConfDeclaration): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const cat of categoriesOf(conf)) for (const p of cat.parameters) out.set(p.name, p.default);
  return out;
}

function assignFields(target: object, values: ReadonlyMap<string, unknown>): void {
  for (const [name, value] of values) {
    Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
  }
}

function flatten(conf: ConfDeclaration, values: ConfValues<ConfDeclaration>): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const byCat = values as Record<string, Record<string, unknown>>;
  for (const cat of categoriesOf(conf))
    for (const p of cat.parameters) out.set(p.name, byCat[cat.name]?.[p.name]);
  return out;
}

const handles = new WeakMap<object, ConfigurableHandle<ConfDeclaration>>();
const declarations = new WeakMap<object, ConfDeclaration>();

/**
 * The class decorator of the seed example (TC39 standard decorators): every
 * instance gets one field per parameter, set to its default at construction,
 * to the configuration as soon as it is read, and again on every change.
 * One watch serves all instances of the class; instances are held weakly.
 */
export function Configurable<D extends ConfDeclaration>(options: ConfigurableOptions<D>) {
  return <C extends abstract new (...args: never[]) => object>(
    target: C,
    context: ClassDecoratorContext<C>,
  ): C => {
    let handle: ConfigurableHandle<D> | undefined;
    const instances = new Set<WeakRef<object>>();
    // Instances are held weakly; the registry drops their entries when they are collected.
    const registry = new FinalizationRegistry<WeakRef<object>>((ref) => instances.delete(ref));
    const start = (): ConfigurableHandle<D> => {
      if (handle) return handle;
      const h = configurable(options);
      handle = h;
      h.changes$.subscribe((values) => {
        const fields = flatten(options.conf, values);
        for (const ref of instances) {
          const instance = ref.deref();
          if (instance === undefined) instances.delete(ref);
          else assignFields(instance, fields);
        }
      });
      return h;
    };
    const proxy = new Proxy(target, {
      construct(t, args, newTarget) {
        const instance = Reflect.construct(t, args, newTarget) as object;
        const h = start();
        assignFields(
          instance,
          h.current === undefined ? defaultsOf(options.conf) : flatten(options.conf, h.current),
        );
        const ref = new WeakRef(instance);
        instances.add(ref);
        registry.register(instance, ref);
        handles.set(instance, h as unknown as ConfigurableHandle<ConfDeclaration>);
        declarations.set(instance, options.conf);
        return instance;
      },
    });
    context.addInitializer(() => {
      declarations.set(proxy, options.conf);
      handles.set(proxy, {
        get current() {
          return start().current;
        },
        get changes$() {
          return start().changes$;
        },
        get errors$() {
          return start().errors$;
        },
        ready: () => start().ready(),
        close: () => {
          handle?.close();
          handle = undefined;
        },
      } as unknown as ConfigurableHandle<ConfDeclaration>);
    });
    return proxy;
  };
}

/**
 * The live configuration behind a `@Configurable` class or one of its instances.
 * Pass the declaration the class was decorated with to get its inferred type:
 * `configurationOf(MyConfigurable, conf).current?.MYCONF.myparam` is a number.
 */
export function configurationOf<D extends ConfDeclaration>(
  classOrInstance: object,
  conf: D,
): ConfigurableHandle<D>;
export function configurationOf<D extends ConfDeclaration = ConfDeclaration>(
  classOrInstance: object,
): ConfigurableHandle<D>;
export function configurationOf(
  classOrInstance: object,
  conf?: ConfDeclaration,
): ConfigurableHandle<ConfDeclaration> {
  const h = handles.get(classOrInstance);
  if (h === undefined)
    throw new TypeError('configurationOf() takes a @Configurable class or one of its instances');
  if (conf !== undefined && declarations.get(classOrInstance) !== conf) {
    throw new TypeError(
      'configurationOf(target, conf): conf is not the declaration the class was decorated with (pass the same object)',
    );
  }
  return h;
}
