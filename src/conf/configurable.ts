import {
  BehaviorSubject,
  catchError,
  combineLatest,
  EMPTY,
  filter,
  firstValueFrom,
  map,
  merge,
  type Observable,
  retry,
  Subject,
  type Subscription,
  share,
  tap,
  timer,
} from 'rxjs';
import { LinkEtcdError as LinkError, type LinkEtcdError } from '../errors.js';
import { defaultLogger, type Logger } from '../log.js';
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
}

/** A live configuration: its current value, its changes and its errors. */
export interface ConfigurableHandle<D extends ConfDeclaration> {
  /** The last good configuration, or undefined until the first one is read. */
  readonly current: ConfValues<D> | undefined;
  /** The current configuration at subscription (once known), then every change. */
  readonly changes$: Observable<ConfValues<D>>;
  /** Values or files that did not parse, missing required parameters, unreachable sources. */
  readonly errors$: Observable<LinkEtcdError>;
  /** Resolves with the first configuration. */
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
  const layers: Observable<RawConf>[] = paths.flatMap((path) =>
    options.drivers.map((driver) => {
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
          next: () => clearTimeout(waiting),
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
  const current = new BehaviorSubject<ConfValues<D> | undefined>(undefined);
  const typed$ =
    layers.length === 0
      ? EMPTY
      : typedConf(combineLatest(layers).pipe(map(layerRaw)), options.conf, label, report);
  const subscription: Subscription = typed$.subscribe(current);
  const driverErrors = merge(...options.drivers.map((d) => d.errors$));

  return {
    get current() {
      return current.value;
    },
    changes$: current.pipe(
      filter((v): v is ConfValues<D> => v !== undefined),
      share({ resetOnRefCountZero: true }),
    ),
    errors$: merge(errors, driverErrors),
    ready: () => firstValueFrom(current.pipe(filter((v): v is ConfValues<D> => v !== undefined))),
    close: () => {
      subscription.unsubscribe();
      current.complete();
      errors.complete();
    },
  };
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
        return instance;
      },
    });
    context.addInitializer(() => {
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

/** The live configuration behind a `@Configurable` class or one of its instances. */
export function configurationOf<D extends ConfDeclaration = ConfDeclaration>(
  classOrInstance: object,
): ConfigurableHandle<D> {
  const h = handles.get(classOrInstance);
  if (h === undefined)
    throw new TypeError('configurationOf() takes a @Configurable class or one of its instances');
  return h as unknown as ConfigurableHandle<D>;
}
