import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSyncSettings, type SyncSettings } from '../../src/cli/sync-settings.js';
import { SYNC_DEFAULTS } from '../../src/sync/defaults.js';
import { cliInProcess } from '../support/cli.js';

type DefaultName = keyof typeof SYNC_DEFAULTS;

/** A text of the repository, with every run of blanks and line breaks made one space (prose is wrapped). */
const prose = async (file: string) =>
  (await readFile(new URL(`../../${file}`, import.meta.url), 'utf8')).replace(/\s+/g, ' ');

/** "more than half": how the docs say the share in words. */
const shareInWords = (share: number): string => (share === 0.5 ? 'half' : `${share * 100}%`);

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface Setting {
  /** The `sync` flag. */
  readonly flag: string;
  /** The sync.conf key. */
  readonly key: string;
  /** The field of the loaded settings. */
  readonly field: keyof SyncSettings;
}

/**
 * How each default is quoted: as a setting (flag, sync.conf key, loaded
 * field; none for a default that is not a setting), and in sentences of the
 * docs. Typed by SYNC_DEFAULTS' keys, so a new default must say where it is quoted.
 */
const QUOTED: Record<DefaultName, { setting?: Setting; sentences: Array<[string, string]> }> = {
  prefix: { setting: { flag: '--prefix', key: 'prefix', field: 'prefix' }, sentences: [] },
  conflict: {
    setting: { flag: '--conflict', key: 'conflict', field: 'conflict' },
    sentences: [['README.md', `\`--conflict ${SYNC_DEFAULTS.conflict}\` (default)`]],
  },
  allowMassDelete: {
    setting: { flag: '--allow-mass-delete', key: 'allow_mass_delete', field: 'allowMassDelete' },
    sentences: [],
  },
  maxDeleteShare: {
    setting: { flag: '--max-delete-share', key: 'max_delete_share', field: 'maxDeleteShare' },
    sentences: [
      ['README.md', `loses more than ${shareInWords(SYNC_DEFAULTS.maxDeleteShare)} of the mirrored keys`],
      [
        'docs/OPERATIONS.md',
        `lost more than ${shareInWords(SYNC_DEFAULTS.maxDeleteShare)} of the mirrored keys`,
      ],
    ],
  },
  fullReconcileSeconds: {
    setting: { flag: '--full-reconcile', key: 'full_reconcile', field: 'fullReconcile' },
    sentences: [
      ['README.md', `every \`--full-reconcile\` seconds (default ${SYNC_DEFAULTS.fullReconcileSeconds})`],
      ['docs/OPERATIONS.md', `(every ${SYNC_DEFAULTS.fullReconcileSeconds} s by default)`],
    ],
  },
  maxFileBytes: {
    setting: { flag: '--max-file-size', key: 'max_file_size', field: 'maxFileSize' },
    sentences: [],
  },
  allowInsecureConfDir: {
    setting: {
      flag: '--allow-insecure-conf-dir',
      key: 'allow_insecure_conf_dir',
      field: 'allowInsecureConfDir',
    },
    sentences: [],
  },
  allowAnyNames: {
    setting: { flag: '--allow-any-names', key: 'allow_any_names', field: 'allowAnyNames' },
    sentences: [],
  },
  quietMs: {
    sentences: [
      ['README.md', `counts only once the file was quiet for ${SYNC_DEFAULTS.quietMs} ms`],
      ['docs/ARCHITECTURE.md', `is held until the file was quiet for ${SYNC_DEFAULTS.quietMs} ms`],
    ],
  },
};

const settings = (Object.keys(SYNC_DEFAULTS) as DefaultName[]).flatMap((name) => {
  const { setting } = QUOTED[name];
  return setting === undefined ? [] : [{ ...setting, value: SYNC_DEFAULTS[name] }];
});

/** The README's flag table: flag -> its default cell. */
async function readmeFlagDefaults(): Promise<Map<string, string>> {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const cells = new Map<string, string>();
  for (const m of readme.matchAll(/^\| `(--[a-z-]+)[^`]*` \|([^|]*)\|/gm)) {
    cells.set(m[1] as string, (m[2] as string).trim());
  }
  return cells;
}

/** `sync --help`: option -> its help entry, wrapped lines joined. */
async function syncHelpEntries(): Promise<Map<string, string>> {
  const help = await cliInProcess('sync', '--help');
  expect(help.code).toBe(0);
  const entries = new Map<string, string>();
  for (const entry of help.stdout.join('\n').split(/\n(?= {2}-)/)) {
    const flag = /^ {2}(--[a-z-]+)/.exec(entry)?.[1];
    if (flag !== undefined) entries.set(flag, entry.trim().replace(/\s+/g, ' '));
  }
  return entries;
}

describe('SYNC_DEFAULTS is the one source of the daemon defaults', () => {
  it('is what the settings loader gives without flags, variables or sync.conf', async () => {
    const loaded = await loadSyncSettings('/nonexistent/link-etcd-defaults-test', {}, {});
    for (const { field, value } of settings) expect(loaded[field], field).toBe(value);
  });

  it.each(settings)('`sync --help` quotes the default of $flag', async ({ flag, value }) => {
    const entry = (await syncHelpEntries()).get(flag);
    expect(entry, `${flag} is not in \`link-etcd sync --help\``).toBeDefined();
    // A switch is off unless given: its help has no default to quote.
    if (typeof value === 'boolean') {
      expect(value).toBe(false);
      expect(entry).not.toContain('(default');
    } else expect(entry).toContain(`(default ${value})`);
  });

  it.each(settings)("the README's flag table quotes the default of $flag", async ({ flag, value }) => {
    const cell = (await readmeFlagDefaults()).get(flag);
    expect(cell, `${flag} is not in the README's flag table`).toBeDefined();
    expect(cell).toBe(typeof value === 'boolean' ? (value ? 'on' : '') : `\`${value}\``);
  });

  it("the README's sync.conf example loads, with the defaults as its values", async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const example = /```ini\n(\[SYNC\]\n[\s\S]*?)```/.exec(readme)?.[1];
    expect(example, 'no ```ini block starting with [SYNC] in the README').toBeDefined();
    const dir = await mkdtemp(join(tmpdir(), 'link-etcd-readme-sync-conf-'));
    try {
      await mkdir(join(dir, 'link', 'etcd'), { recursive: true });
      await writeFile(join(dir, 'link', 'etcd', 'sync.conf'), example as string);
      const loaded = await loadSyncSettings(dir, {}, {});
      for (const { key, field, value } of settings) {
        expect(example, `sync.conf example: ${key}`).toMatch(
          new RegExp(`^${key} = ${escapeRegExp(String(value))}$`, 'm'),
        );
        expect(loaded[field], key).toBe(value);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each(
    (Object.keys(QUOTED) as DefaultName[]).flatMap((name) =>
      QUOTED[name].sentences.map(([file, sentence]) => ({ name, file, sentence })),
    ),
  )('$file states $name: "$sentence"', async ({ file, sentence }) => {
    expect((await prose(file)).includes(sentence), `${file} should say "${sentence}"`).toBe(true);
  });
});
