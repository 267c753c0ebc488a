import { isDeepStrictEqual } from 'node:util';
import { concatMap, defer, filter, type Observable } from 'rxjs';
import { ConfValueError } from '../errors.js';
import type { ConfDeclaration, ConfValues, RawConf } from './model.js';
import { resolveConf } from './resolve.js';

/**
 * Raw configurations -> typed ones, for subscribers. A value that does not
 * parse is reported and replaced by its last good value, so it never reaches
 * the stream; a configuration equal to the last one emitted is not emitted
 * again; while a required parameter has never been seen, nothing is emitted.
 */
export function typedConf<D extends ConfDeclaration>(
  raw$: Observable<RawConf>,
  declaration: D,
  path: string,
  report: (error: ConfValueError) => void,
): Observable<ConfValues<D>> {
  return defer(() => {
    let last: ConfValues<D> | undefined;
    return raw$.pipe(
      concatMap(async (raw) => {
        const { values, issues } = await resolveConf(declaration, raw, path, last);
        if (issues.length > 0) report(new ConfValueError(issues));
        if (last === undefined && issues.some((i) => i.raw === undefined)) return undefined;
        if (last !== undefined && isDeepStrictEqual(values, last)) return undefined;
        last = values;
        return values;
      }),
      filter((values): values is Awaited<ConfValues<D>> => values !== undefined),
    );
  });
}
