import { describe, expect, it } from 'vitest';
import { isSecretKey, MASK, maskCredentials, maskValue } from '../../src/secrets.js';

const K = '/shop/database.conf/POSTGRES';

describe('maskValue', () => {
  // Each masked row is one change away from the unmasked row above it.
  it.each([
    // key names
    [`${K}/host`, 'hunter2', 'hunter2'],
    [`${K}/db_password`, 'hunter2', MASK],
    [`${K}/passwd`, 'hunter2', MASK],
    [`${K}/ssh_passphrase`, 'hunter2', MASK],
    [`${K}/client_secret`, 'hunter2', MASK],
    [`${K}/API_TOKEN`, 'hunter2', MASK],
    [`${K}/credential`, 'hunter2', MASK],
    [`${K}/private-key`, 'hunter2', MASK],
    [`${K}/apikey`, 'hunter2', MASK],
    ['db_password', 'hunter2', MASK],
    // only the last segment names the key
    ['/password.conf/S/host', 'hunter2', 'hunter2'],
    ['/app.conf/password/host', 'hunter2', 'hunter2'],
    // URLs
    [`${K}/dsn`, 'postgres://u@h/db', 'postgres://u@h/db'],
    [`${K}/dsn`, 'postgres://u:hunter2@h/db', `postgres://u:${MASK}@h/db`],
    [`${K}/dsn`, 'postgres://u:hunt@r2@h/db', `postgres://u:${MASK}@h/db`],
    [`${K}/dsn`, 'postgres://u:hun/ter2@h/db', `postgres://u:${MASK}@h/db`],
    [`${K}/dsn`, 'redis://:hunter2@h:6379/0', `redis://:${MASK}@h:6379/0`],
    [`${K}/dsn`, 'mongodb://u:hunter2@h1,h2/db', `mongodb://u:${MASK}@h1,h2/db`],
    [`${K}/urls`, 'http://a:hunter2@h1,http://b:hunter3@h2', `http://a:${MASK}@h1,http://b:${MASK}@h2`],
    [`${K}/url`, 'see "https://u:hunter2@h/x" here', `see "https://u:${MASK}@h/x" here`],
    [`${K}/url`, 'http://h:8080/a@b', 'http://h:8080/a@b'],
    [`${K}/url`, 'http://u:8080@b', `http://u:${MASK}@b`],
    // key=value pairs in DSN-like strings
    [`${K}/dsn`, 'host=h user=u dbname=db', 'host=h user=u dbname=db'],
    [`${K}/dsn`, 'host=h password=hunter2 dbname=db', `host=h password=${MASK} dbname=db`],
    [`${K}/dsn`, "host=h password='hunt er2' dbname=db", `host=h password='${MASK}' dbname=db`],
    [`${K}/dsn`, 'host=h pwd = hunter2', `host=h pwd = ${MASK}`],
    [`${K}/dsn`, 'Server=h;Password=hunter2;Database=db', `Server=h;Password=${MASK};Database=db`],
    [`${K}/dsn`, 'Server=h;User Id=u;PWD=hunter2;', `Server=h;User Id=u;PWD=${MASK};`],
    [`${K}/url`, 'https://h/cb?access_token=hunter2&x=1', `https://h/cb?access_token=${MASK}&x=1`],
    [`${K}/url`, 'https://h/cb?secret=hunter2', `https://h/cb?secret=${MASK}`],
    [`${K}/json`, '{"user":"u","password":"hun\\"ter2"}', `{"user":"u","password":"${MASK}"}`],
    [`${K}/yaml`, 'token: hunter2', `token: ${MASK}`],
    [`${K}/opts`, '--db-password=hunter2 -v', `--db-password=${MASK} -v`],
    // not a secret name: left alone
    [`${K}/dsn`, 'host=h passive=hunter2 tokenizer=x', 'host=h passive=hunter2 tokenizer=x'],
    // headers and tokens
    [`${K}/header`, 'X-Trace: hunter2', 'X-Trace: hunter2'],
    [`${K}/header`, 'Authorization: Bearer hunter2', `Authorization: Bearer ${MASK}`],
    [`${K}/header`, 'authorization: Basic dXNlcjpodW50ZXIy', `authorization: Basic ${MASK}`],
    [`${K}/header`, 'Authorization: hunter2', `Authorization: ${MASK}`],
    [`${K}/curl`, '-H "bearer hunter2.x-y_z=="', `-H "bearer ${MASK}"`],
    // PEM keys
    [`${K}/pem`, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----', 'unchanged'],
    [`${K}/pem`, 'a -----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY----- b', `a ${MASK} b`],
    [`${K}/pem`, '-----BEGIN PRIVATE KEY-----\nMIIB cut', MASK],
  ])('%s = %j -> %j', (key, value, expected) => {
    const masked = maskValue(key, value);
    expect(masked).toBe(expected === 'unchanged' ? value : expected);
    if (masked !== value) expect(masked).not.toContain('hunter2');
  });

  it('is idempotent: masking a masked value changes nothing', () => {
    for (const value of [
      'postgres://u:hunter2@h/db password=hunter2',
      'Authorization: Bearer hunter2',
      '{"token": "hunter2"}',
    ]) {
      const once = maskCredentials(value);
      expect(maskCredentials(once)).toBe(once);
      expect(once).not.toContain('hunter2');
    }
  });

  it('isSecretKey reads the last segment only', () => {
    expect(isSecretKey('/a.conf/S/db_password')).toBe(true);
    expect(isSecretKey('/secret.conf/S/host')).toBe(false);
  });
});
