import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { loadSyncSettings } from '../../src/cli/sync-settings.js';
import { parserFor } from '../../src/conf/value-types.js';
import { SettingsError, ValueParseError } from '../../src/errors.js';
import { BOOLEAN_DESCRIPTION, FALSE_WORDS, parseBoolean, TRUE_WORDS } from '../../src/ini/boolean.js';
import { loadSettings } from '../../src/middleware/settings.js';

/** A conf dir with no middleware.conf and no sync.conf: only the options and the environment count. */
const NO_CONF_DIR = '/nonexistent/link-etcd-boolean-test';

/** Each word as written, in other cases and with blanks around it. */
const spellings = (word: string): string[] => [
  word,
  word.toUpperCase(),
  ` ${word[0]?.toUpperCase()}${word.slice(1)}\t`,
];

const TRUE_SPELLINGS = TRUE_WORDS.flatMap(spellings);
const FALSE_SPELLINGS = FALSE_WORDS.flatMap(spellings);
const NOT_BOOLEANS = [
  '',
  ' ',
  'maybe',
  'y',
  'n',
  't',
  'f',
  '2',
  '-1',
  '01',
  'truee',
  'o n',
  'constructor',
  '__proto__',
];

describe('parseBoolean (configparser BOOLEAN_STATES)', () => {
  it("has configparser's words: 1/yes/true/on and 0/no/false/off", () => {
    expect([...TRUE_WORDS].sort()).toEqual(['1', 'on', 'true', 'yes']);
    expect([...FALSE_WORDS].sort()).toEqual(['0', 'false', 'no', 'off']);
  });

  it.each(TRUE_SPELLINGS)('reads %j as true', (text) => {
    expect(parseBoolean(text)).toBe(true);
  });

  it.each(FALSE_SPELLINGS)('reads %j as false', (text) => {
    expect(parseBoolean(text)).toBe(false);
  });

  it.each(NOT_BOOLEANS)('reads %j as no boolean', (text) => {
    expect(parseBoolean(text)).toBeUndefined();
  });

  it('describes every word, and only those, for error messages', () => {
    const described = BOOLEAN_DESCRIPTION.split(/[,/]\s*/).sort();
    expect(described).toEqual([...TRUE_WORDS, ...FALSE_WORDS].sort());
  });

  it('is the list the README gives, twice (middleware.conf and `bool` parameters)', async () => {
    const readme = (await readFile(new URL('../../README.md', import.meta.url), 'utf8'))
      .replace(/`/g, '')
      .replace(/\s+/g, ' ');
    for (const sentence of [
      `Booleans read ${BOOLEAN_DESCRIPTION} in any case`,
      `bool (${BOOLEAN_DESCRIPTION}, any case)`,
    ]) {
      expect(readme.includes(sentence), `README.md should say "${sentence}"`).toBe(true);
    }
  });
});

describe('its three readers accept the same words and keep their messages', () => {
  const middlewareBool = async (text: string) =>
    (await loadSettings({ confDir: NO_CONF_DIR, options: { allow_reconnect: text } })).allowReconnect;
  const syncBool = async (text: string) =>
    (await loadSyncSettings(NO_CONF_DIR, {}, { LINK_ETCD_LOCAL_ETCD: text })).localEtcd;
  const paramBool = parserFor('bool');

  it.each([
    ...TRUE_SPELLINGS.map((text) => [text, true] as const),
    ...FALSE_SPELLINGS.map((text) => [text, false] as const),
  ])('%j is %s to middleware.conf, sync.conf and `bool` parameters', async (text, value) => {
    expect(await middlewareBool(text)).toBe(value);
    expect(await syncBool(text)).toBe(value);
    expect(await paramBool(text)).toBe(value);
  });

  it('middleware.conf: "Expected `key` to be a boolean (words), got `text` (string)"', async () => {
    const error = await middlewareBool('maybe').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SettingsError);
    expect((error as Error).message).toBe(
      'Expected `allow_reconnect` to be a boolean (true/false, yes/no, on/off, 1/0), got `maybe` (string) in the EtcdMiddleware options',
    );
  });

  it('sync.conf: "Expected `key` to be a boolean, got `text`"', async () => {
    const error = await syncBool('maybe').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SettingsError);
    expect((error as Error).message).toBe(
      'Expected `local_etcd` to be a boolean, got `maybe` in $LINK_ETCD_LOCAL_ETCD',
    );
  });

  it('`bool` parameters: "expected a boolean (words)", a ValueParseError', async () => {
    const error = await paramBool('maybe').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValueParseError);
    expect(error).toMatchObject({
      code: 'BAD_VALUE',
      message: 'expected a boolean (true/false, yes/no, on/off, 1/0)',
    });
  });
});
