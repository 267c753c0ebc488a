/**
 * The one way a configuration value reaches a log line or stdout at info
 * level or above: {@link maskValue}. It errs towards masking too much: a
 * hidden host name costs a look at the file, a leaked password costs a
 * rotation.
 */

/** What a masked value, or a masked part of one, prints as. */
export const MASK = '***';

/**
 * Keys whose values stay out of logs: their last segment names a password,
 * secret, token, credential or private/API key. The conflict record file
 * (mode 0600, next to the conf file) still keeps the losing value.
 */
export const SECRET_KEY =
  /pass|pwd|secret|token|credential|auth|(private|api|access|signing|encryption)[_-]?key/i;

/** `key` is a path (`/prefix/app.conf/S/db_password`) or a bare name: its last segment decides. */
export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key.slice(key.lastIndexOf('/') + 1));
}

/** `value` as it may be logged under `key`: `***` for a secret-named key, else {@link maskCredentials}. */
export function maskValue(key: string, value: string): string {
  return isSecretKey(key) ? MASK : maskCredentials(value);
}

/** A PEM private key block, or the start of one cut short. */
const PRIVATE_KEY_PEM =
  /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g;

/** `Authorization: <scheme> <credentials>` (a header, or `authorization=` in a setting). */
const AUTHORIZATION = /(\bauthorization["']?\s*[:=]\s*["']?)(?:([A-Za-z][\w-]*)[ \t]+)?([^\s"';,&]+)/gi;

/** `Bearer <token>` anywhere. */
const BEARER = /\b(bearer)[ \t]+([\w.~+/-]+=*)/gi;

/**
 * A URL from its scheme to the next blank, quote or next URL: the userinfo
 * (`user:password@`) is what comes before the last `@` of it.
 */
const URL_WITH_AUTHORITY = /([a-z][a-z0-9+.-]*:\/\/)((?:(?![a-z][a-z0-9+.-]*:\/\/)[^\s"'])*)/gi;

/**
 * `name=value` or `name: value` where the name ends like a secret one (also
 * `pwd`): libpq DSNs (`host=h password=p`), ADO/ODBC strings
 * (`Server=h;Password=p;`), URL queries (`?access_token=t&x=1`), JSON or
 * YAML fragments (`"password": "p"`). An unquoted value runs to the next
 * blank, `;` or `&`; a quoted one to its closing quote.
 */
const SECRET_PAIR =
  /(?<![A-Za-z0-9])([\w.-]*(?:pass(?:word|wd|phrase)?|pwd|secret|token|credentials?|private[_-]?key|api[_-]?key)s?)(["']?[ \t]*[=:][ \t]*)("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^\s;&]+)/gi;

function maskUrlUserinfo(scheme: string, rest: string): string {
  const at = rest.lastIndexOf('@');
  const colon = rest.indexOf(':');
  if (at < 0 || colon < 0 || colon > at) return scheme + rest;
  const password = rest.slice(colon + 1, at);
  // `http://host:8080/a@b` is a port and a path, not a password.
  if (password === '' || password === MASK || /^\d{1,5}[/?#]/.test(password)) return scheme + rest;
  return `${scheme}${rest.slice(0, colon + 1)}${MASK}${rest.slice(at)}`;
}

/**
 * The parts of `text` that look like credentials, masked: a URL's password
 * (`scheme://user:***@host`), secret-named `name=value` pairs in DSN-like
 * strings, `Authorization:` headers, `Bearer` tokens and PEM private keys.
 * Everything else is kept, so the line still says which host or file it is
 * about.
 */
export function maskCredentials(text: string): string {
  return text
    .replace(PRIVATE_KEY_PEM, MASK)
    .replace(AUTHORIZATION, (_m, lead: string, scheme: string | undefined) =>
      scheme === undefined ? `${lead}${MASK}` : `${lead}${scheme} ${MASK}`,
    )
    .replace(BEARER, (_m, word: string) => `${word} ${MASK}`)
    .replace(URL_WITH_AUTHORITY, (_m, scheme: string, rest: string) => maskUrlUserinfo(scheme, rest))
    .replace(SECRET_PAIR, (_m, name: string, separator: string, value: string) => {
      const quote = value[0] === '"' || value[0] === "'" ? value[0] : '';
      return `${name}${separator}${quote}${MASK}${quote}`;
    });
}
