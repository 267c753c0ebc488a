import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Hooks, runCommand } from '../../src/cli/hooks.js';
import type { HookSpec } from '../../src/cli/sync-settings.js';
import { HookRefusedError } from '../../src/errors.js';
import { isMirrored, setNamePolicy } from '../../src/layout/mirrored.js';

let dir: string;
let confDir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'link-etcd-hooks-'));
  confDir = join(dir, 'conf');
  await mkdir(confDir);
});
afterEach(async () => {
  setNamePolicy('portable');
  await rm(dir, { recursive: true, force: true });
});

const logger = pino({ level: 'silent' });

const hook = (checkCmd: string, glob = '**/*.conf'): HookSpec => ({
  name: 'h',
  glob,
  checkCmd,
  reloadCmd: undefined,
  waitMin: 0.1,
  waitMax: 1,
  timeout: 5,
});

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/** Quotes a path for the test's own command text (the test's paths are its own, not hostile). */
const q = (path: string) => `'${path.replace(/'/g, `'\\''`)}'`;

describe('hook placeholders', () => {
  // Hostile conf paths, each a folder plus a name (only a name with an `x` before it is mirrored under any policy).
  const HOSTILE = [
    'a;touch MARK;b.conf',
    'a$(touch MARK)b.conf',
    'a`touch MARK`b.conf',
    "a';touch MARK;'b.conf",
    'a";touch MARK;"b.conf',
    'a $(touch MARK) `touch MARK` \'"; touch MARK #.conf',
    'x--output=MARK.conf',
    '--output=MARK.conf',
    '-rf.conf',
  ];

  it.each(HOSTILE)('expands {path} of %j to exactly its absolute path, running nothing', async (name) => {
    const marker = join(dir, 'MARK');
    const confPath = `sub dir/${name.replace(/MARK/g, marker)}`;
    const staged = join(confDir, 'sub dir', '.link-etcd-0123abcd.tmp');
    const out = join(dir, 'OUT');
    const outFile = join(dir, 'OUT-FILE');
    for (const command of [
      `printf '%s\\n' {path} > ${q(out)}`,
      `printf '%s\\n' "{path}" > ${q(out)}`,
      `printf '%s\\n' '{path}' > ${q(out)}`,
    ]) {
      await rm(out, { force: true });
      const hooks = new Hooks([hook(command)], logger, confDir);
      await hooks.check(confPath, staged);
      expect(await readFile(out, 'utf8'), command).toBe(`${join(confDir, confPath)}\n`);
    }
    // The safe form for a nested shell: the placeholder as an argument, read as "$1".
    const nested = new Hooks(
      [hook(`sh -c 'printf "%s\\n" "$1" > ${out}; printf "%s\\n" "$2" > ${outFile}' sh {path} {file}`)],
      logger,
      confDir,
    );
    await nested.check(confPath, staged);
    expect(await readFile(out, 'utf8')).toBe(`${join(confDir, confPath)}\n`);
    expect(await readFile(outFile, 'utf8')).toBe(`${staged}\n`);
    expect(await exists(marker)).toBe(false);
  });

  it('gives an absolute path that never starts with `-` (no option injection)', async () => {
    const marker = join(dir, 'MARK');
    const out = join(dir, 'OUT');
    await writeFile(out, '');
    // `ls {path}` with a path read as an option would list nothing, or fail on an unknown option.
    const confPath = `--help.conf`;
    await writeFile(join(confDir, confPath), '');
    const hooks = new Hooks([hook(`ls -d {path} {file} > ${q(out)} && touch ${q(marker)}`)], logger, confDir);
    await hooks.check(confPath, join(confDir, confPath));
    expect((await readFile(out, 'utf8')).split('\n')).toEqual([
      join(confDir, confPath),
      join(confDir, confPath),
      '',
    ]);
    expect(await exists(marker)).toBe(true);
  });

  it('mirrors the hostile names above under allow_any_names, but never one starting with `-`', () => {
    setNamePolicy('any');
    for (const name of HOSTILE) expect(isMirrored(`sub dir/${name}`), name).toBe(!name.startsWith('-'));
    setNamePolicy('portable');
    for (const name of HOSTILE) expect(isMirrored(`sub dir/${name}`), name).toBe(false);
  });

  it('makes {file} absolute, and finds {path} next to the staged file when not given the conf dir', async () => {
    const out = join(dir, 'OUT');
    const previous = process.cwd();
    process.chdir(dir);
    try {
      const staged = relative(dir, join(confDir, 'app', '.link-etcd-0123abcd.tmp'));
      const hooks = new Hooks([hook(`printf '%s\\n' {file} {path} > ${q(out)}`)], logger);
      await hooks.check('app/x.conf', staged);
      expect(await readFile(out, 'utf8')).toBe(
        `${join(confDir, 'app', '.link-etcd-0123abcd.tmp')}\n${join(confDir, 'app', 'x.conf')}\n`,
      );
    } finally {
      process.chdir(previous);
    }
  });

  it('refuses the change when check_cmd fails, and runs only the hooks whose glob matches', async () => {
    const hooks = new Hooks(
      [hook('test "{path}" != "{file}" && exit 3', 'a/*.conf'), hook('exit 4', 'b/*.conf')],
      logger,
      confDir,
    );
    const error = await hooks.check('a/x.conf', join(confDir, 'a', 'tmp')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HookRefusedError);
    expect((error as Error).message).toMatch(/exit 3/);
    await expect(hooks.check('c/x.conf', join(confDir, 'c', 'tmp'))).resolves.toBeUndefined();
  });

  it('runCommand passes the values through the environment, unparsed', async () => {
    const marker = join(dir, 'MARK');
    const { output } = await runCommand(
      'printf "<%s>" {path}; printf "<%s>" "$LINK_ETCD_PATH"',
      { path: `/x/$(touch ${marker})\`touch ${marker}\`` },
      5,
    );
    expect(output).toBe(
      `</x/$(touch ${marker})\`touch ${marker}\`></x/$(touch ${marker})\`touch ${marker}\`>`,
    );
    expect(await exists(marker)).toBe(false);
  });
});
