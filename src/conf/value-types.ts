import { ValueParseError } from '../errors.js';
import { BOOLEAN_DESCRIPTION, parseBoolean } from '../ini/boolean.js';
import { isStandardSchema, type StandardSchemaV1 } from './standard-schema.js';

/** The named types a Parameter may have. */
export type BuiltinType = 'string' | 'int' | 'float' | 'bool' | 'json' | 'list';

/** A parser: takes the raw text, returns the value or throws with the reason. */
export type ValueParser<T = unknown> = (raw: string) => T | Promise<T>;

export type ParamType = BuiltinType | ValueParser | StandardSchemaV1;

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** The TypeScript type of a value of type `T`. */
export type ValueOf<T> = T extends 'string'
  ? string
  : T extends 'int' | 'float'
    ? number
    : T extends 'bool'
      ? boolean
      : T extends 'json'
        ? JsonValue
        : T extends 'list'
          ? string[]
          : T extends StandardSchemaV1
            ? StandardSchemaV1.InferOutput<T>
            : T extends (raw: string) => infer R
              ? Awaited<R>
              : never;

const BUILTIN: Record<BuiltinType, (raw: string) => unknown> = {
  string: (raw) => raw,
  int: (raw) => {
    const text = raw.trim();
    const n = Number(text);
    if (!/^[+-]?\d+$/.test(text) || !Number.isSafeInteger(n))
      throw new ValueParseError('expected an integer');
    return n;
  },
  float: (raw) => {
    const text = raw.trim();
    const n = Number(text);
    if (text === '' || !Number.isFinite(n)) throw new ValueParseError('expected a number');
    return n;
  },
  bool: (raw) => {
    const value = parseBoolean(raw);
    if (value === undefined) throw new ValueParseError(`expected a boolean (${BOOLEAN_DESCRIPTION})`);
    return value;
  },
  json: (raw) => {
    try {
      return JSON.parse(raw) as unknown;
    } catch (error) {
      throw new ValueParseError(`expected JSON: ${(error as Error).message}`);
    }
  },
  list: (raw) =>
    raw.trim() === ''
      ? []
      : raw
          .split(',')
          .map((item) => item.trim())
          .filter((item) => item !== ''),
};

/** Turns a declared type into one async parser whose failures are `ValueParseError`s with a reason. */
export function parserFor(type: ParamType): (raw: string) => Promise<unknown> {
  if (typeof type === 'string') {
    const parse = BUILTIN[type];
    if (parse === undefined) throw new TypeError(`Unknown parameter type \`${type}\``);
    return async (raw) => parse(raw);
  }
  if (isStandardSchema(type)) {
    return async (raw) => {
      const result = await type['~standard'].validate(raw);
      if (result.issues) throw new ValueParseError(result.issues.map((i) => i.message).join('; '));
      return result.value;
    };
  }
  return async (raw) => {
    try {
      return await type(raw);
    } catch (error) {
      throw new ValueParseError(error instanceof Error ? error.message : String(error));
    }
  };
}
