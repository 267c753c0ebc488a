import { LinkEtcdError } from '../errors.js';
import { type ParamType, parserFor, type ValueOf } from './value-types.js';

/** A declared parameter. `Present` is true when it always has a value (a default, or required). */
export interface Parameter<N extends string = string, V = unknown, Present extends boolean = boolean> {
  readonly name: N;
  readonly type: ParamType;
  readonly default: V | undefined;
  readonly required: boolean;
  readonly description: string | undefined;
  /** Raw text -> value; rejects with a ValueParseError naming the reason. */
  readonly parse: (raw: string) => Promise<V>;
  /** Type-level only: whether the value is always there. */
  readonly present?: Present;
}

export interface ParameterSpec<N extends string, T extends ParamType, D, R extends boolean> {
  /** The key name in the category. */
  name: N;
  /** `string` (default), `int`, `float`, `bool`, `json`, `list`, a parser function, or a Standard Schema validator. */
  type?: T;
  /** The value when the key is absent (already typed: not parsed). */
  default?: D;
  /** When true, a missing key is an error rather than `undefined`. */
  required?: R;
  description?: string;
}

/** The spec without its name: the second argument of `Parameter('name', { ... })`. */
export type ParameterOptions<T extends ParamType, D, R extends boolean> = Omit<
  ParameterSpec<string, T, D, R>,
  'name'
>;

const BUILTIN_CHECKS: Readonly<Record<string, readonly [string, (v: unknown) => boolean]>> = {
  string: ['a string', (v) => typeof v === 'string'],
  int: ['an integer', (v) => typeof v === 'number' && Number.isSafeInteger(v)],
  float: ['a finite number', (v) => typeof v === 'number' && Number.isFinite(v)],
  bool: ['a boolean', (v) => typeof v === 'boolean'],
  list: ['an array of strings', (v) => Array.isArray(v) && v.every((i) => typeof i === 'string')],
  json: ['a JSON value', (v) => v !== undefined && typeof v !== 'function' && typeof v !== 'bigint'],
};

/** Refuses a declaration a value could never fit: no name, a default of another type. */
function checkSpec(spec: { name?: unknown; type?: unknown; default?: unknown }): void {
  if (typeof spec.name !== 'string' || spec.name === '') {
    throw new LinkEtcdError(
      'BAD_VALUE',
      `Parameter needs a name: Parameter('myparam') or Parameter({ name: 'myparam', ... }), got ${typeof spec.name === 'string' ? 'an empty name' : typeof spec.name}`,
    );
  }
  const type = spec.type ?? 'string';
  if (typeof type === 'string' && !(type in BUILTIN_CHECKS)) {
    throw new LinkEtcdError(
      'BAD_VALUE',
      `Parameter \`${spec.name}\`: unknown type \`${type}\` (string, int, float, bool, json, list, a parser function or a Standard Schema)`,
    );
  }
  if (spec.default === undefined || typeof type !== 'string') return;
  const [expected, ok] = BUILTIN_CHECKS[type] as readonly [string, (v: unknown) => boolean];
  if (!ok(spec.default)) {
    throw new LinkEtcdError(
      'BAD_VALUE',
      `Parameter \`${spec.name}\` of type ${type}: its default must be ${expected} (already typed, not text), got ${JSON.stringify(spec.default) ?? String(spec.default)} (${typeof spec.default})`,
    );
  }
}

/**
 * Declares a parameter; its value type is inferred from `type`. As in
 * b3j0f.conf, the name may come first: `Parameter('myparam', { type: 'int' })`.
 * A default that is not a value of the type is refused here (`BAD_VALUE`).
 */
export function Parameter<
  const N extends string,
  const T extends ParamType = 'string',
  D extends ValueOf<T> | undefined = undefined,
  R extends boolean = false,
>(
  spec: ParameterSpec<N, T, D, R>,
): Parameter<N, ValueOf<T>, R extends true ? true : undefined extends D ? false : true>;
export function Parameter<
  const N extends string,
  const T extends ParamType = 'string',
  D extends ValueOf<T> | undefined = undefined,
  R extends boolean = false,
>(
  name: N,
  options?: ParameterOptions<T, D, R>,
): Parameter<N, ValueOf<T>, R extends true ? true : undefined extends D ? false : true>;
export function Parameter(
  specOrName: ParameterSpec<string, ParamType, unknown, boolean> | string,
  options?: ParameterOptions<ParamType, unknown, boolean>,
): Parameter {
  const spec: Partial<ParameterSpec<string, ParamType, unknown, boolean>> =
    typeof specOrName === 'string'
      ? { ...options, name: specOrName }
      : typeof specOrName === 'object' && specOrName !== null
        ? specOrName
        : { name: specOrName };
  checkSpec(spec);
  const type = spec.type ?? 'string';
  return {
    name: spec.name as string,
    type,
    default: spec.default,
    required: spec.required === true,
    description: spec.description,
    parse: parserFor(type),
  };
}

export interface Category<N extends string = string, P extends readonly Parameter[] = readonly Parameter[]> {
  readonly name: N;
  readonly parameters: P;
}

/** A named group of parameters: an INI section, an etcd key level. */
export function category<const N extends string, const P extends readonly Parameter[]>(
  name: N,
  ...parameters: P
): Category<N, P> {
  const seen = new Set<string>();
  for (const p of parameters) {
    if (seen.has(p.name))
      throw new TypeError(`Parameter \`${p.name}\` is declared twice in category ${name}`);
    seen.add(p.name);
  }
  return { name, parameters };
}

export interface Configuration<C extends readonly Category[] = readonly Category[]> {
  readonly categories: C;
}

/** Several categories: one file, one etcd subtree. */
export function configuration<const C extends readonly Category[]>(...categories: C): Configuration<C> {
  return { categories };
}

/** What a driver accepts as a declaration: one category or a whole configuration. */
export type ConfDeclaration = Category | Configuration;

export function categoriesOf(conf: ConfDeclaration): readonly Category[] {
  return 'categories' in conf ? conf.categories : [conf];
}

type ParameterValues<P extends readonly Parameter[]> = {
  [K in P[number] as K['name']]: K extends Parameter<string, infer V, infer Present>
    ? Present extends true
      ? V
      : V | undefined
    : never;
};

type CategoriesValues<C extends readonly Category[]> = {
  [K in C[number] as K['name']]: ParameterValues<K['parameters']>;
};

/** The typed values of a declaration: `{ CATEGORY: { param: value } }`. */
export type ConfValues<D extends ConfDeclaration> =
  D extends Configuration<infer C> ? CategoriesValues<C> : D extends Category ? CategoriesValues<[D]> : never;

/** Untyped values as stored: category -> parameter -> text. */
export type RawConf = Record<string, Record<string, string>>;
