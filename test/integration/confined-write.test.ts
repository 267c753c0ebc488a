import { renameSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UnsafePathError } from '../../src/errors.js';
import type { WritePhase } from '../../src/files/confined.js';
import { layout } from '../../src/layout/mapping.js';
import { readConfFile, writeConfFile } from '../../src/sync/conf-files.js';

/**
 * A folder moved while the daemon writes a file in it (found by an attack
 * on a running daemon: 3 moves in 15 lost the file, then its keys). Real
 * folders; the move is made at a chosen step through the write's hooks.
 */
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const TEXT = '# the ops team\n[S]\nk = 1\n';
const l = layout('/p/');

async function confDirWith(file?: string) {
  const confDir = await mkdtemp(join(tmpdir(), 'link-etcd-confined-'));
  cleanups.push(() => rm(confDir, { recursive: true, force: true }));
  await mkdir(join(confDir, 'd'));
  if (file !== undefined) {
    await writeFile(join(confDir, 'd', 'a.conf'), file);
    await chmod(join(confDir, 'd', 'a.conf'), 0o640);
  }
  const before = await readConfFile(confDir, l, 'd/a.conf', () => {});
  return { confDir, before };
}

/** Writes k = 2 into d/a.conf, running `move` at `step`; resolves to what the write threw. */
async function writeMovingAt(
  confDir: string,
  before: Awaited<ReturnType<typeof readConfFile>>,
  step: 'before the rename' | WritePhase,
  move: () => void,
): Promise<unknown> {
  // The move is synchronous: done before the write takes its next step.
  const onPhase = (phase: WritePhase) => {
    if (phase === step) move();
  };
  const check = step === 'before the rename' ? async () => move() : undefined;
  return writeConfFile(
    confDir,
    l,
    'd/a.conf',
    [{ key: '/p/d/a.conf/S/k', value: '2' }],
    before,
    check,
    undefined,
    false,
    onPhase,
  ).then(
    () => undefined,
    (error: unknown) => error,
  );
}

describe('a folder moved while a file in it is written', () => {
  it('moved before the rename: nothing is replaced, the file moves as it was', async () => {
    const { confDir, before } = await confDirWith(TEXT);
    const error = await writeMovingAt(confDir, before, 'before the rename', () =>
      renameSync(join(confDir, 'd'), join(confDir, 'd.moved')),
    );
    expect(error).toBeInstanceOf(UnsafePathError);
    expect((error as Error).message).toMatch(/moved while link-etcd wrote it: nothing replaced/);
    expect(await readFile(join(confDir, 'd.moved', 'a.conf'), 'utf8')).toBe(TEXT);
    expect(await readdir(join(confDir, 'd.moved'))).toEqual(['a.conf']);
  });

  it('moved within the conf dir right after the rename: the text is put back as it was', async () => {
    const { confDir, before } = await confDirWith(TEXT);
    const error = await writeMovingAt(confDir, before, 'visible', () =>
      renameSync(join(confDir, 'd'), join(confDir, 'd.moved')),
    );
    expect((error as Error).message).toMatch(/its text was put back as it was/);
    expect(await readFile(join(confDir, 'd.moved', 'a.conf'), 'utf8')).toBe(TEXT);
    expect((await stat(join(confDir, 'd.moved', 'a.conf'))).mode & 0o777).toBe(0o640);
    expect(await readdir(join(confDir, 'd.moved'))).toEqual(['a.conf']);
  });

  it('moved out of the conf dir right after the rename: the file is there, as it was', async () => {
    const { confDir, before } = await confDirWith(TEXT);
    const outside = await mkdtemp(join(tmpdir(), 'link-etcd-confined-out-'));
    cleanups.push(() => rm(outside, { recursive: true, force: true }));
    const error = await writeMovingAt(confDir, before, 'visible', () =>
      renameSync(join(confDir, 'd'), join(outside, 'd')),
    );
    expect(error).toBeInstanceOf(UnsafePathError);
    expect(await readFile(join(outside, 'd', 'a.conf'), 'utf8')).toBe(TEXT);
    expect(await readdir(join(outside, 'd'))).toEqual(['a.conf']);
  });

  it('a file that was not there before is removed from the moved folder', async () => {
    const { confDir, before } = await confDirWith();
    const error = await writeMovingAt(confDir, before, 'visible', () =>
      renameSync(join(confDir, 'd'), join(confDir, 'd.moved')),
    );
    expect((error as Error).message).toMatch(/what it wrote was removed/);
    expect(await readdir(join(confDir, 'd.moved'))).toEqual([]);
  });

  it('a save made in the moved folder before the undo is kept', async () => {
    const { confDir, before } = await confDirWith(TEXT);
    const theirs = '[S]\nk = theirs\n';
    const error = await writeMovingAt(confDir, before, 'visible', () => {
      renameSync(join(confDir, 'd'), join(confDir, 'd.moved'));
      writeFileSync(join(confDir, 'd.moved', 'a.conf'), theirs);
    });
    expect((error as Error).message).toMatch(/not undone/);
    expect(await readFile(join(confDir, 'd.moved', 'a.conf'), 'utf8')).toBe(theirs);
  });
});
