import { execFile } from 'node:child_process';
import { access, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadSyncSettings } from '../../src/cli/sync-settings.js';
import { loadSettings } from '../../src/middleware/settings.js';
import type { EtcdServer } from '../harness/etcd.js';
import { blocksOf, type DocBlock, expectedOutput, RUNNABLE_LANGS } from '../support/doc-blocks.js';
import { useEtcd } from '../support/lifecycle.js';

/**
 * Every TypeScript/JavaScript example of README.md and docs/ runs, as a user
 * would run it, against a real etcd: `link-etcd` is the built dist/, the conf
 * dir holds a middleware.conf naming the test etcd, and the example must exit
 * 0 on its own and print what its `// prints:` comments say. Every INI block
 * that shows a middleware.conf or a sync.conf loads with the code that reads them.
 */

const ROOT = resolve(import.meta.dirname, '..', '..');
const DOCS = [
  'README.md',
  'docs/DESIGN.md',
  'docs/ARCHITECTURE.md',
  'docs/OPERATIONS.md',
  'docs/SECURITY.md',
];
const DIST = pathToFileURL(join(ROOT, 'dist', 'index.js')).href;
const EXAMPLE_TIMEOUT_MS = 30_000;

let etcd: EtcdServer;
const { defer } = useEtcd((started) => {
  etcd = started;
});

const blocks: DocBlock[] = [];
for (const doc of DOCS) blocks.push(...(await blocksOf(join(ROOT, doc)).catch(() => [])));
const runnable = blocks.filter((b) => RUNNABLE_LANGS.has(b.lang));
const settingsFiles = blocks.filter(
  (b) => b.lang === 'ini' && /^\s*\[(ETCD|SYNC|HOOK [^\]]+)\]\s*$/m.test(b.code),
);
const where = (b: DocBlock) => `${relative(ROOT, b.file)}:${b.line}`;

beforeAll(async () => {
  await access(join(ROOT, 'dist', 'index.js')).catch(() => {
    throw new Error('dist/index.js is missing: run `npm run build` first (`npm test` does)');
  });
});

function run(
  file: string,
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [file],
      { env, timeout: EXAMPLE_TIMEOUT_MS, killSignal: 'SIGKILL', cwd: ROOT },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        done({ code: error?.killed ? null : code, stdout, stderr });
      },
    );
  });
}

describe('documentation examples run (real etcd)', () => {
  it('finds the examples', () => {
    expect(runnable.length).toBeGreaterThanOrEqual(5);
    expect(settingsFiles.length).toBeGreaterThanOrEqual(2);
  });

  it.each(runnable.map((b) => [where(b), b] as const))('%s runs and exits 0', async (_name, block) => {
    if (block.fragment !== undefined) {
      console.log(`${where(block)}: skipped, a fragment: ${block.fragment}`);
      return;
    }
    // Inside the repository (under the ignored .tmp/), so the example resolves rxjs as an app would.
    await mkdir(join(ROOT, '.tmp'), { recursive: true });
    const dir = await mkdtemp(join(ROOT, '.tmp', 'example-'));
    defer(() => rm(dir, { recursive: true, force: true }));
    const confDir = join(dir, 'etc');
    await mkdir(join(confDir, 'link', 'etcd'), { recursive: true });
    await writeFile(
      join(confDir, 'link', 'etcd', 'middleware.conf'),
      `[ETCD]\nhost = ${etcd.host}\nport = ${etcd.port}\nread_timeout = 10\n`,
    );
    const source = block.code.replace(/(from\s+)(['"])link-etcd\2/g, `$1'${DIST}'`);
    const js = ts.transpileModule(source, {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
      fileName: 'example.mts',
    }).outputText;
    const file = join(dir, 'example.mjs');
    await writeFile(file, js);
    const env = { ...process.env, B3J0F_CONF_DIR: confDir, LINK_ETCD_LOG_LEVEL: 'warn' };
    const result = await run(file, env);
    const report = `${where(block)}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
    expect(result.code, `exit status (null: killed after ${EXAMPLE_TIMEOUT_MS / 1000} s)\n${report}`).toBe(0);
    for (const text of expectedOutput(block.code)) expect(result.stdout, report).toContain(text);
  });

  it.each(settingsFiles.map((b) => [where(b), b] as const))(
    '%s loads as the file it shows',
    async (_name, block) => {
      await mkdir(join(ROOT, '.tmp'), { recursive: true });
      const dir = await mkdtemp(join(ROOT, '.tmp', 'settings-'));
      defer(() => rm(dir, { recursive: true, force: true }));
      await mkdir(join(dir, 'link', 'etcd'), { recursive: true });
      const warnings: string[] = [];
      if (/^\s*\[ETCD\]/m.test(block.code)) {
        await writeFile(join(dir, 'link', 'etcd', 'middleware.conf'), block.code);
        const settings = await loadSettings({ confDir: dir });
        warnings.push(...(settings.warnings ?? []));
      } else {
        await writeFile(join(dir, 'link', 'etcd', 'sync.conf'), block.code);
        // The globs of the example name files of the example's conf dir: make one for each.
        for (const m of block.code.matchAll(/^glob\s*=\s*([^*\s;#]+)\//gm)) {
          await mkdir(join(dir, m[1] as string), { recursive: true });
          await writeFile(join(dir, m[1] as string, 'example.conf'), '[S]\nk = v\n');
        }
        await loadSyncSettings(dir, {}, {}, (w) => warnings.push(w));
      }
      expect(warnings, where(block)).toEqual([]);
    },
  );
});
