import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeValue, encodeValue } from '../../src/ini/escape.js';
import { parseIni } from '../../src/ini/parse.js';
import { hasLineBreak, isTrimmed } from '../../src/layout/ini-chars.js';
import { keyOf, layout, parseKey } from '../../src/layout/mapping.js';
import { isMirrored, isSkippedFolder, mirroredRefusal, setNamePolicy } from '../../src/layout/mirrored.js';

describe('conf path <-> key mapping', () => {
  const l = layout('/');

  it('maps the seed example both ways', () => {
    const parsed = parseKey(l, '/myproject/myconfigurable.conf/MYCONF/myparam');
    expect(parsed).toEqual({
      ok: true,
      address: { confPath: 'myproject/myconfigurable.conf', section: 'MYCONF', key: 'myparam' },
    });
    if (parsed.ok) expect(keyOf(l, parsed.address)).toBe('/myproject/myconfigurable.conf/MYCONF/myparam');
    expect(keyOf(layout('apps'), { confPath: 'a.conf', section: 'S', key: 'k' })).toBe('/apps/a.conf/S/k');
  });

  it.each([
    ['/../etc/passwd.conf/S/k', /`\.\.`/],
    ['/a/./b.conf/S/k', /`\.`/],
    ['/a//b.conf/S/k', /empty/],
    ['/.hidden/b.conf/S/k', /dot/],
    ['/a/.b.conf/S/k', /dot/],
    ['/a\u0000b.conf/S/k', /control/],
    ['/a\nb.conf/S/k', /control/],
    [`/${'x'.repeat(300)}.conf/S/k`, /255 bytes/],
    ['/link/etcd/middleware.conf/ETCD/password', /never mirrored/],
    ['/a.txt/S/k', /not a \.conf/],
    ['/a.conf/k', /not <file\.conf>/],
    ['/a.conf/S]/k', /`]`/],
    ['/a.conf/S/k=v', /`=`/],
    ['/a.conf/S/;k', /starts with/],
    ['/a.conf/S/ k', /spaces/],
    ['/a.conf/S/', /empty key/],
    ['/a.conf.swp/S/k', /not a \.conf/],
    // Not an editor backup (those end in `~`), but `~` is outside the portable set: see names.test.ts.
    ['/a~.conf/S/k', /character `~` \(U\+007E\) is outside the portable set/],
    ['/a-~.conf/S/k', /portable set/],
    ['/-a.conf/S/k', /starts with `-`/],
  ])('refuses %s with a reason', (key, reason) => {
    const parsed = parseKey(l, key);
    if (reason === undefined) expect(parsed.ok).toBe(true);
    else {
      expect(parsed.ok).toBe(false);
      if (!parsed.ok) expect(parsed.reason).toMatch(reason);
    }
  });

  it('mirrors **/*.conf only, never editor temp files or link/etcd', () => {
    expect(mirroredRefusal('a/b/c.conf')).toBeUndefined();
    expect(mirroredRefusal('link/etcd/sync.conf')).toMatch(/never mirrored/);
    expect(mirroredRefusal('link/other.conf')).toBeUndefined();
    expect(mirroredRefusal('a/#c.conf#')).toBeDefined();
    expect(mirroredRefusal('a/c.conf.conflict-1')).toBeDefined();
  });

  it('mirrors a name ending in `~.conf` under allow_any_names: only `~` at the very end marks a backup', () => {
    setNamePolicy('any');
    try {
      expect(parseKey(l, '/a~.conf/S/k').ok).toBe(true);
      expect(mirroredRefusal('a/c.conf~')).toBeDefined();
    } finally {
      setNamePolicy('portable');
    }
  });

  // One rule for the scan, the file watcher and the key mapping: link/etcd/ in any case or Unicode spelling.
  it.each([
    ['link/etcd/sync.conf', false],
    ['Link/Etcd/sync.conf', false],
    ['LINK/ETCD/middleware.conf', false],
    ['\uff4c\uff49\uff4e\uff4b/etcd/x.conf', false],
    ['link/etcd /x.conf', false],
    ['l\u0131nk/etcd/x.conf', false],
    ['lin\u212a/etcd/x.conf', false],
    ['link./etcd/x.conf', false],
    ['L\u0130nk/etcd/x.conf', false],
    ['link/etcd/deeper/x.conf', false],
    ['link/etcdx/a.conf', true],
    ['etcd/link/a.conf', true],
    ['app/link/etcd/a.conf', true],
  ])('isMirrored(%s) is %s, and the key mapping agrees', (path, mirrored) => {
    expect(isMirrored(path)).toBe(mirrored);
    expect(parseKey(l, `/${path}/S/k`).ok).toBe(mirrored);
  });

  it.each([
    ['', false],
    ['link', false],
    ['link/etcd', true],
    ['Link/ETCD', true],
    ['LINK/ETCD', true],
    ['link/etcd ', true],
    ['l\u0131nk/etcd', true],
    ['lin\u212a/etcd', true],
    ['\uff4c\uff49\uff4e\uff4b/etcd', true],
    ['link./etcd', true],
    ['L\u0130nk/etcd', true],
    ['link/etcdx', false],
    ['link/etcd/sub', true],
    ['a/.git', true],
    ['.hidden', true],
    ['app/link/etcd', false],
  ])('isSkippedFolder(%s) is %s', (dir, skipped) => {
    expect(isSkippedFolder(dir)).toBe(skipped);
  });

  it('keeps __proto__ a plain name', () => {
    expect(parseKey(l, '/a.conf/__proto__/polluted')).toMatchObject({ ok: true });
  });
});

describe('value escaping', () => {
  it.each([
    ['plain', 'plain'],
    ["a;b # c = d [e] 'f'", "a;b # c = d [e] 'f'"],
    [' padded ', '" padded "'],
    ['two\nlines', '"two\\nlines"'],
    ['', ''],
    ['"abc"', '"abc"'],
    ['" x "', '"\\" x \\""'],
    ['ünïcødé ✓', 'ünïcødé ✓'],
  ])('writes %j as %j', (value, text) => {
    expect(encodeValue(value)).toBe(text);
    expect(decodeValue(text)).toBe(value);
  });

  it('goes etcd -> file -> etcd byte for byte for any string (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (value) => {
        const line = `k = ${encodeValue(value)}\n`;
        const read = parseIni(`[S]\n${line}`, 'p.conf').sections.get('S')?.get('k') as string;
        expect(decodeValue(read)).toBe(value);
      }),
      { numRuns: 2000 },
    );
  });

  it('goes file -> etcd -> file byte for byte for any value text a file can hold (property)', () => {
    const fileText = fc
      .oneof(
        fc.string({ unit: 'binary' }),
        fc.string().map((s) => JSON.stringify(s)),
      )
      .map((s) => s.replace(/[\r\n]/g, '').trim())
      // Text with a character some reader takes for a line break is always written quoted (escape.ts).
      .filter((s) => !hasLineBreak(s) && isTrimmed(s));
    fc.assert(
      fc.property(fileText, (text) => {
        expect(encodeValue(decodeValue(text))).toBe(text);
      }),
      { numRuns: 2000 },
    );
  });
});
