import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadSyncSettings } from '../../src/cli/sync-settings.js';
import { SettingsError } from '../../src/errors.js';
import { layout, parseKey } from '../../src/layout/mapping.js';
import {
  foldName,
  isMirrored,
  isSkippedFolder,
  mirroredRefusal,
  namePolicy,
  segmentRefusal,
  setNamePolicy,
} from '../../src/layout/mirrored.js';
import { cliInProcess } from '../support/cli.js';

const l = layout('/');

/** One name that is mirrored under both policies; every row below changes one thing in it. */
const BASE = 'app-1/My_conf.v2+x@y.conf';

/** The verdict of all three views: the conf path rule, the key mapping (through its cache) and a key's reason. */
function verdict(confPath: string): { mirrored: boolean; reason: string | undefined } {
  const refusal = mirroredRefusal(confPath);
  const parsed = parseKey(l, `/${confPath}/S/k`);
  expect(parsed.ok, `parseKey agrees with mirroredRefusal on ${JSON.stringify(confPath)}`).toBe(
    refusal === undefined,
  );
  expect(isMirrored(confPath)).toBe(refusal === undefined);
  return { mirrored: refusal === undefined, reason: parsed.ok ? undefined : parsed.reason };
}

afterEach(() => setNamePolicy('portable'));

describe('the base name', () => {
  it.each(['portable', 'any'] as const)('is mirrored under the %s policy', (policy) => {
    setNamePolicy(policy);
    expect(verdict(BASE)).toEqual({ mirrored: true, reason: undefined });
  });

  it('defaults to the portable policy', () => {
    expect(namePolicy()).toBe('portable');
  });

  it('refuses an unknown policy', () => {
    expect(() => setNamePolicy('lax' as 'any')).toThrow(/unknown name policy/);
    expect(namePolicy()).toBe('portable');
  });
});

describe('portable names (the default)', () => {
  // [conf path (one change from BASE), the character the reason names, mirrored under allow_any_names]
  it.each([
    ['app-1/My conf.v2+x@y.conf', 'U+0020', true],
    ['app-1/My;conf.v2+x@y.conf', '`;` (U+003B)', true],
    ['app-1/My$conf.v2+x@y.conf', '`$` (U+0024)', true],
    ['app-1/My$(id)conf.v2+x@y.conf', '`$` (U+0024)', true],
    ['app-1/My`id`conf.v2+x@y.conf', 'U+0060', true],
    ["app-1/My'conf.v2+x@y.conf", "`'` (U+0027)", true],
    ['app-1/My"conf.v2+x@y.conf', '`"` (U+0022)', true],
    ['app-1/My*conf.v2+x@y.conf', '`*` (U+002A)', true],
    ['app-1/My?conf.v2+x@y.conf', '`?` (U+003F)', true],
    ['app-1/My[c]onf.v2+x@y.conf', '`[` (U+005B)', true],
    ['app-1/My{a,b}conf.v2+x@y.conf', '`{` (U+007B)', true],
    ['app-1/My|conf.v2+x@y.conf', '`|` (U+007C)', true],
    ['app-1/My&conf.v2+x@y.conf', '`&` (U+0026)', true],
    ['app-1/My<conf.v2+x@y.conf', '`<` (U+003C)', true],
    ['app-1/My>conf.v2+x@y.conf', '`>` (U+003E)', true],
    ['app-1/My(conf.v2+x@y.conf', '`(` (U+0028)', true],
    ['app-1/My!conf.v2+x@y.conf', '`!` (U+0021)', true],
    ['app-1/My#conf.v2+x@y.conf', '`#` (U+0023)', true],
    ['app-1/My%conf.v2+x@y.conf', '`%` (U+0025)', true],
    ['app-1/My=conf.v2+x@y.conf', '`=` (U+003D)', true],
    ['app-1/My,conf.v2+x@y.conf', '`,` (U+002C)', true],
    ['app-1/My:conf.v2+x@y.conf', '`:` (U+003A)', true],
    ['app-1/My~conf.v2+x@y.conf', '`~` (U+007E)', true],
    ['app-1/My^conf.v2+x@y.conf', '`^` (U+005E)', true],
    ['app 1/My_conf.v2+x@y.conf', 'U+0020', true],
    ['app-1/Mÿ_conf.v2+x@y.conf', '`ÿ` (U+00FF)', true],
    ['app-1/My_cönf.v2+x@y.conf', '`ö` (U+00F6)', true],
    ['app-1/My_conf.v2+x@y\u00a0.conf', 'U+00A0', true],
    ['app-1/My_conf.v2+x@y\u200b.conf', 'U+200B', true],
    ['app-1/My_conf.v2+x@y\u2028.conf', 'U+2028', true],
    ['app-1/My_conf.v2+x@y\u{1f600}.conf', '`\u{1f600}` (U+1F600)', true],
    ['app-1/My_conf.v2+x@y\ufeff.conf', 'U+FEFF', true],
    ['app-1/\uff2dy_conf.v2+x@y.conf', '`\uff2d` (U+FF2D)', true],
  ])('refuses %j, naming %s, unless allow_any_names', (path, character, mirroredWhenAny) => {
    const { mirrored, reason } = verdict(path);
    expect(mirrored).toBe(false);
    expect(reason).toBe(
      `character ${character} is outside the portable set (letters, digits, . _ - + @); set allow_any_names to mirror it`,
    );
    setNamePolicy('any');
    expect(verdict(path).mirrored).toBe(mirroredWhenAny);
  });

  // Every character of the portable set, in a place BASE does not already have it.
  it.each([
    'app-1/My_conf.v2+x@y.conf',
    'App-1/My_conf.v2+x@y.conf',
    'app-1/Z9_conf.v2+x@y.conf',
    'app.1/My_conf.v2+x@y.conf',
    'app_1/My_conf.v2+x@y.conf',
    'app+1/My_conf.v2+x@y.conf',
    'app@1/My_conf.v2+x@y.conf',
    'app-1/My_conf.v2+x@y-.conf',
    '1app/My_conf.v2+x@y.conf',
    '_app/My_conf.v2+x@y.conf',
    '+app/My_conf.v2+x@y.conf',
    '@app/My_conf.v2+x@y.conf',
    'My_conf.v2+x@y.conf',
    'a/b/c/d/e/My_conf.v2+x@y.conf',
  ])('mirrors %j', (path) => {
    expect(verdict(path)).toEqual({ mirrored: true, reason: undefined });
  });
});

describe('refused under both policies', () => {
  it.each([
    ['-app/My_conf.v2+x@y.conf', /starts with `-`/],
    ['app-1/-My_conf.v2+x@y.conf', /starts with `-`/],
    ['--app/My_conf.v2+x@y.conf', /starts with `-`/],
    ['app-1/.My_conf.v2+x@y.conf', /starts with a dot/],
    ['.app/My_conf.v2+x@y.conf', /starts with a dot/],
    ['app-1/../My_conf.v2+x@y.conf', /`\.\.`/],
    ['app-1/./My_conf.v2+x@y.conf', /`\.`/],
    ['app-1//My_conf.v2+x@y.conf', /empty/],
    ['app-1/My\u0000conf.v2+x@y.conf', /control character/],
    ['app-1/My\nconf.v2+x@y.conf', /control character/],
    ['app-1/My\u007fconf.v2+x@y.conf', /control character/],
    ['app-1/My\\conf.v2+x@y.conf', /backslash/],
    [`app-1/${'m'.repeat(251)}.conf`, /longer than 255 bytes \(the file system's limit\)/],
    [`${'a'.repeat(256)}/My_conf.v2+x@y.conf`, /longer than 255 bytes \(the file system's limit\)/],
  ])('refuses %j with %s', (path, reason) => {
    for (const policy of ['portable', 'any'] as const) {
      setNamePolicy(policy);
      const { mirrored, reason: why } = verdict(path);
      expect(mirrored, policy).toBe(false);
      expect(why, policy).toMatch(reason);
    }
  });

  it('mirrors a name of exactly 255 bytes, and counts bytes, not characters', () => {
    expect(verdict(`app-1/${'m'.repeat(250)}.conf`).mirrored).toBe(true);
    setNamePolicy('any');
    // 127 two-byte characters + `.conf` = 259 bytes, though only 132 characters.
    expect(segmentRefusal(`${'é'.repeat(127)}.conf`)).toMatch(/255 bytes/);
    expect(segmentRefusal(`${'é'.repeat(125)}.conf`)).toBeUndefined();
  });

  it('lets through a `-` that does not start a segment', () => {
    expect(verdict('a-/b-c-.conf').mirrored).toBe(true);
  });
});

describe('the name policy and the verdict cache', () => {
  it('a verdict the key mapping cached under one policy does not outlive a change of policy', () => {
    const path = 'cache/a b.conf';
    expect(parseKey(l, `/${path}/S/k`).ok).toBe(false);
    setNamePolicy('any');
    expect(parseKey(l, `/${path}/S/k`).ok).toBe(true);
    setNamePolicy('portable');
    expect(parseKey(l, `/${path}/S/k`).ok).toBe(false);
  });

  it('does not restrict section and key names (only path segments)', () => {
    expect(parseKey(l, '/a.conf/My Section;x/key with $(spaces)')).toMatchObject({
      ok: true,
      address: { confPath: 'a.conf', section: 'My Section;x', key: 'key with $(spaces)' },
    });
  });
});

describe('link/etcd/ in any form', () => {
  const refused = [
    'link/etcd/x.conf',
    'LINK/ETCD/x.conf',
    'Link/eTcD/x.conf',
    'link/etcd /x.conf',
    'link /etcd/x.conf',
    'link/etcd  /x.conf',
    'link./etcd/x.conf',
    'link/etcd./x.conf',
    'link/etcd. ./x.conf',
    'l\u0131nk/etcd/x.conf',
    'L\u0130nk/etcd/x.conf',
    'l\u0130nk/ETCD/x.conf',
    'lin\u212a/etcd/x.conf',
    '\uff4c\uff49\uff4e\uff4b/etcd/x.conf',
    'link/\uff45\uff54\uff43\uff44/x.conf',
    '\uff2c\uff29\uff2e\uff2b/\uff25\uff34\uff23\uff24/x.conf',
    'li\u0308nk/etcd/x.conf',
    'l\u00efnk/etcd/x.conf',
    'link/e\u0301tcd/x.conf',
    'li\u200bnk/etcd/x.conf',
    'link/etcd\u00a0/x.conf',
    'link/etcd\u3000/x.conf',
    '\u1d38ink/etcd/x.conf',
    'link/etcd/deeper/x.conf',
    'link/etcd/sync.conf',
    'link/etcd/middleware.conf',
  ];

  it.each(refused)('refuses %j under both policies, through isMirrored and parseKey', (path) => {
    for (const policy of ['portable', 'any'] as const) {
      setNamePolicy(policy);
      const { mirrored, reason } = verdict(path);
      expect(mirrored, policy).toBe(false);
      expect(reason, policy).toBe('link/etcd/ holds link-etcd settings and is never mirrored');
    }
  });

  it.each(refused.map((path) => path.slice(0, path.lastIndexOf('/'))))(
    'skips the folder %j (neither scanned nor watched)',
    (dir) => {
      expect(isSkippedFolder(dir)).toBe(true);
    },
  );

  it.each([
    'link/etcdx/a.conf',
    'link/etc/a.conf',
    'links/etcd/a.conf',
    'lnk/etcd/a.conf',
    'etcd/link/a.conf',
    'app/link/etcd/a.conf',
    'link/etcd.conf',
    'link/a.conf',
    'link-etcd/a.conf',
  ])('mirrors %j', (path) => {
    expect(verdict(path).mirrored).toBe(true);
    expect(isSkippedFolder(path.slice(0, path.lastIndexOf('/')))).toBe(false);
  });

  it.each([
    ['LINK', 'link'],
    ['l\u0131nk', 'link'],
    ['L\u0130NK', 'link'],
    ['lin\u212a', 'link'],
    ['\uff4c\uff49\uff4e\uff4b', 'link'],
    ['etcd. . ', 'etcd'],
    ['\u017fync', 'sync'],
    ['\u1e9b', 's'],
    ['e\u0301tcd', 'etcd'],
  ])('folds %j to %j', (name, folded) => {
    expect(foldName(name)).toBe(folded);
  });
});

describe('the allow_any_names setting', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'link-etcd-names-'));
    await mkdir(join(dir, 'link', 'etcd'), { recursive: true });
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));
  const conf = (text: string) => writeFile(join(dir, 'link', 'etcd', 'sync.conf'), text);

  it('is off by default', async () => {
    expect((await loadSyncSettings(dir, {}, {})).allowAnyNames).toBe(false);
  });

  it.each([
    ['sync.conf', '[SYNC]\nallow_any_names = true\n', {}, {}, true],
    ['sync.conf (yes)', '[SYNC]\nallow_any_names = yes\n', {}, {}, true],
    ['sync.conf (false)', '[SYNC]\nallow_any_names = false\n', {}, {}, false],
    ['the variable', '', {}, { LINK_ETCD_ALLOW_ANY_NAMES: 'true' }, true],
    [
      'the variable over sync.conf',
      '[SYNC]\nallow_any_names = true\n',
      {},
      { LINK_ETCD_ALLOW_ANY_NAMES: '0' },
      false,
    ],
    ['the flag', '', { allow_any_names: true }, {}, true],
    ['the flag over the variable', '', { allow_any_names: true }, { LINK_ETCD_ALLOW_ANY_NAMES: 'off' }, true],
  ])('is read from %s', async (_source, text, flags, env, expected) => {
    await conf(text);
    expect((await loadSyncSettings(dir, flags, env)).allowAnyNames).toBe(expected);
  });

  it('names the source of a wrong value', async () => {
    await conf('[SYNC]\nallow_any_names = sometimes\n');
    const error = await loadSyncSettings(dir, {}, {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SettingsError);
    expect((error as Error).message).toMatch(/`allow_any_names`.*boolean.*`sometimes`.*sync\.conf/);
  });

  it('is a flag of `sync`', async () => {
    const help = await cliInProcess('sync', '--help');
    expect(help.stdout.join(' ').replace(/\s+/g, ' ')).toMatch(
      /--allow-any-names mirror conf paths outside the portable set/,
    );
  });
});
