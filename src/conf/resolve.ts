import { type ConfIssue, ValueParseError } from '../errors.js';
import { type Category, type ConfDeclaration, type ConfValues, categoriesOf, type RawConf } from './model.js';

export interface Resolved<D extends ConfDeclaration> {
  readonly values: ConfValues<D>;
  readonly issues: readonly ConfIssue[];
}

type Loose = Record<string, Record<string, unknown>>;

function rawOf(raw: RawConf, category: string, parameter: string): string | undefined {
  const section = Object.hasOwn(raw, category) ? raw[category] : undefined;
  return section !== undefined && Object.hasOwn(section, parameter) ? section[parameter] : undefined;
}

async function resolveCategory(
  cat: Category,
  raw: RawConf,
  path: string,
  previous: Record<string, unknown> | undefined,
  issues: ConfIssue[],
): Promise<Record<string, unknown>> {
  const entries = await Promise.all(
    cat.parameters.map(async (p): Promise<[string, unknown]> => {
      // What a parameter falls back to when its stored text is unusable: its last good value, else its default.
      const fallback =
        previous !== undefined && Object.hasOwn(previous, p.name) ? previous[p.name] : p.default;
      const text = rawOf(raw, cat.name, p.name);
      if (text === undefined) {
        if (p.required && p.default === undefined) {
          issues.push({
            path,
            category: cat.name,
            parameter: p.name,
            raw: undefined,
            reason: 'required, but missing',
          });
          return [p.name, fallback];
        }
        return [p.name, p.default];
      }
      try {
        return [p.name, await p.parse(text)];
      } catch (error) {
        const reason = error instanceof ValueParseError ? error.message : String(error);
        issues.push({ path, category: cat.name, parameter: p.name, raw: text, reason });
        return [p.name, fallback];
      }
    }),
  );
  return Object.fromEntries(entries);
}

/**
 * Stored text -> typed values, defaults filled. Pure apart from awaiting
 * async validators. A value that does not parse is reported in `issues` and
 * replaced by `previous`'s value for that parameter (or its default), so a
 * bad edit never reaches an app.
 */
export async function resolveConf<D extends ConfDeclaration>(
  declaration: D,
  raw: RawConf,
  path: string,
  previous?: ConfValues<D>,
): Promise<Resolved<D>> {
  const issues: ConfIssue[] = [];
  const prev = previous as Loose | undefined;
  const categories = await Promise.all(
    categoriesOf(declaration).map(
      async (cat) => [cat.name, await resolveCategory(cat, raw, path, prev?.[cat.name], issues)] as const,
    ),
  );
  return { values: Object.fromEntries(categories) as ConfValues<D>, issues };
}

/** Later layers override earlier ones, per parameter. */
export function layerRaw(layers: readonly RawConf[]): RawConf {
  const out: RawConf = {};
  for (const layer of layers) {
    for (const [cat, params] of Object.entries(layer)) {
      const section = Object.hasOwn(out, cat) ? (out[cat] as Record<string, string>) : {};
      Object.defineProperty(out, cat, {
        value: { ...section, ...params },
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
  }
  return out;
}
