import { describe, expect, expectTypeOf, it } from 'vitest';
import { type ConfValues, category, configuration, Parameter } from '../../src/conf/model.js';
import { layerRaw, resolveConf } from '../../src/conf/resolve.js';
import type { StandardSchemaV1 } from '../../src/conf/standard-schema.js';
import type { JsonValue } from '../../src/conf/value-types.js';
import { type ConfIssue, ConfValueError } from '../../src/errors.js';

/** A hand-made Standard Schema validator, as zod or valibot would provide: a port number. */
const portSchema: StandardSchemaV1<unknown, number> = {
  '~standard': {
    version: 1,
    vendor: 'test',
    validate: (value) => {
      const n = Number(value);
      return Number.isInteger(n) && n > 0 && n < 65536
        ? { value: n }
        : { issues: [{ message: 'not a port' }] };
    },
  },
};

const conf = configuration(
  category(
    'MYCONF',
    Parameter({ name: 'myparam', type: 'int', default: 3 }),
    Parameter({ name: 'label' }),
    Parameter({ name: 'ratio', type: 'float', required: true }),
    Parameter({ name: 'debug', type: 'bool', default: false }),
    Parameter({ name: 'hosts', type: 'list', default: [] }),
    Parameter({ name: 'extra', type: 'json' }),
  ),
  category(
    'NET',
    Parameter({ name: 'port', type: portSchema, default: 80 }),
    Parameter({ name: 'mode', type: (raw: string) => (raw === 'a' || raw === 'b' ? raw : fail(raw)) }),
  ),
);

function fail(raw: string): never {
  throw new Error(`\`${raw}\` is neither a nor b`);
}

describe('configuration model', () => {
  it('infers the TypeScript type of the values from the declaration', () => {
    expectTypeOf<ConfValues<typeof conf>>().toEqualTypeOf<{
      MYCONF: {
        myparam: number;
        label: string | undefined;
        ratio: number;
        debug: boolean;
        hosts: string[];
        extra: JsonValue | undefined;
      };
      NET: { port: number; mode: 'a' | 'b' | undefined };
    }>();
    const single = category('S', Parameter({ name: 'x', type: 'int', default: 1 }));
    expectTypeOf<ConfValues<typeof single>>().toEqualTypeOf<{ S: { x: number } }>();
  });

  it('parses every type and fills defaults', async () => {
    const { values, issues } = await resolveConf(
      conf,
      {
        MYCONF: { ratio: '0.5', debug: 'YES', hosts: 'a, b,,c', extra: '{"k":[1]}', label: ' spaced ' },
        NET: { port: '8080', mode: 'b' },
      },
      'p.conf',
    );
    expect(issues).toEqual([]);
    expect(values).toEqual({
      MYCONF: {
        myparam: 3,
        label: ' spaced ',
        ratio: 0.5,
        debug: true,
        hosts: ['a', 'b', 'c'],
        extra: { k: [1] },
      },
      NET: { port: 8080, mode: 'b' },
    });
  });

  it.each([
    ['MYCONF', 'myparam', '3.5', /integer/],
    ['MYCONF', 'debug', 'maybe', /boolean/],
    ['MYCONF', 'extra', '{nope', /JSON/],
    ['NET', 'port', '99999', /not a port/],
    ['NET', 'mode', 'c', /neither a nor b/],
  ])(
    'reports %s.%s = %s with path, raw value and reason, keeping the previous value',
    async (cat, param, raw, reason) => {
      const good = await resolveConf(
        conf,
        { MYCONF: { ratio: '1', myparam: '7' }, NET: { mode: 'a' } },
        'p.conf',
      );
      const bad = await resolveConf(
        conf,
        {
          MYCONF: { ratio: '1', myparam: '7' },
          NET: { mode: 'a' },
          [cat]: { ratio: '1', mode: 'a', [param]: raw },
        },
        'p.conf',
        good.values,
      );
      expect(bad.issues).toHaveLength(1);
      const issue = bad.issues[0] as ConfIssue;
      expect(issue).toMatchObject({ path: 'p.conf', category: cat, parameter: param, raw });
      expect(issue.reason).toMatch(reason);
      expect((bad.values as Record<string, Record<string, unknown>>)[cat]?.[param]).toEqual(
        (good.values as Record<string, Record<string, unknown>>)[cat]?.[param],
      );
    },
  );

  it('reports a missing required parameter', async () => {
    const { issues } = await resolveConf(conf, {}, 'p.conf');
    expect(issues).toEqual([
      {
        path: 'p.conf',
        category: 'MYCONF',
        parameter: 'ratio',
        raw: undefined,
        reason: 'required, but missing',
      },
    ]);
  });

  it('layers raw configurations: later layers override earlier ones per parameter', () => {
    expect(
      layerRaw([
        { A: { x: '1', y: '1' }, B: { z: '1' } },
        { A: { y: '2' }, C: { w: '2' } },
      ]),
    ).toEqual({ A: { x: '1', y: '2' }, B: { z: '1' }, C: { w: '2' } });
  });

  it('does not let a __proto__ category pollute objects', () => {
    const merged = layerRaw([JSON.parse('{"__proto__": {"polluted": "yes"}}')]);
    expect(Object.keys(merged)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('ConfValueError messages', () => {
  it('quote a bad raw value, but never the value of a secret-looking parameter or a URL password', () => {
    const issue = { path: 'app.conf', category: 'DB', reason: 'expected an integer' };
    expect(new ConfValueError([{ ...issue, parameter: 'port', raw: 'abc' }]).message).toBe(
      'app.conf [DB] port = `abc`: expected an integer',
    );
    expect(new ConfValueError([{ ...issue, parameter: 'db_password', raw: 'hunter2' }]).message).toBe(
      'app.conf [DB] db_password = `***`: expected an integer',
    );
    expect(
      new ConfValueError([{ ...issue, parameter: 'dsn', raw: 'postgres://u:hunter2@h/db' }]).message,
    ).not.toContain('hunter2');
  });
});

describe('Parameter declarations', () => {
  it('takes the name first, as Python does', async () => {
    const p = Parameter('myparam');
    expect(p.name).toBe('myparam');
    expect(p.type).toBe('string');
    const port = Parameter('port', { type: 'int', default: 80 });
    expect([port.name, port.default, await port.parse('81')]).toEqual(['port', 80, 81]);
    const c = category('C', port);
    expectTypeOf<ConfValues<typeof c>>().toEqualTypeOf<{ C: { port: number } }>();
  });

  it('refuses a parameter without a name', () => {
    expect(() => Parameter({} as never)).toThrow(/Parameter needs a name/);
    expect(() => (Parameter as (x: unknown) => unknown)(undefined)).toThrow(/Parameter needs a name/);
  });

  it('checks a default against the type at declaration', () => {
    expect(() => Parameter({ name: 'n', type: 'int', default: 'abc' as never })).toThrow(
      /`n` of type int: its default must be an integer .*got "abc" \(string\)/,
    );
    expect(() => Parameter({ name: 'n', type: 'int', default: 1.5 })).toThrow(/must be an integer/);
    expect(() => Parameter({ name: 'b', type: 'bool', default: 'yes' as never })).toThrow(
      /must be a boolean/,
    );
    expect(() => Parameter({ name: 'l', type: 'list', default: 'a,b' as never })).toThrow(/array of strings/);
    expect(() => Parameter({ name: 's', default: 3 as never })).toThrow(/must be a string/);
    expect(() => Parameter({ name: 'x', type: 'nope' as never })).toThrow(/unknown type `nope`/);
    expect(Parameter({ name: 'f', type: 'float', default: 2 }).default).toBe(2);
  });
});
