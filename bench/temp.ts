import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];

/** A fresh folder under the system temp dir, removed by removeTempDirs(). */
export async function tempDir(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `link-etcd-bench-${name}-`));
  made.push(dir);
  return dir;
}

/** A fresh conf dir and state dir for one daemon. */
export async function tempDirs(name: string): Promise<{ confDir: string; stateDir: string }> {
  return { confDir: await tempDir(`${name}-conf`), stateDir: await tempDir(`${name}-state`) };
}

/** The 100,000-key run alone leaves 1,000 files: a bench run cleans up after itself. */
export async function removeTempDirs(): Promise<void> {
  await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}
