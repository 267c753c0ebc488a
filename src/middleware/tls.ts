import { readFile } from 'node:fs/promises';
import { SettingsError } from '../errors.js';
import type { EtcdSettings } from './settings.js';

export interface TlsMaterial {
  readonly rootCertificate: Buffer | undefined;
  readonly privateKey: Buffer | undefined;
  readonly certChain: Buffer | undefined;
}

const PRIVATE_KEY = /-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]+?-----END \1PRIVATE KEY-----\s*/g;
const CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\s*/g;

async function readPem(key: string, path: string, source: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new SettingsError(
      key,
      `Expected \`${key}\` to be a readable PEM file, got \`${path}\` (${reason})`,
      source,
    );
  }
}

/**
 * Reads the PEM files that `cert`, `cert_key` and `ca_cert` name. As in
 * link.etcd, `cert` may hold the certificate and its key in one file.
 */
export async function loadTlsMaterial(settings: EtcdSettings): Promise<TlsMaterial | undefined> {
  const { cert, certKey, caCert, source } = settings;
  if (settings.protocol !== 'https') {
    if (cert !== undefined || caCert !== undefined) {
      throw new SettingsError(
        cert !== undefined ? 'cert' : 'ca_cert',
        'Certificates are set but `protocol` is `http`: set `protocol = https` to use TLS',
        source,
      );
    }
    return undefined;
  }
  const root = caCert === undefined ? undefined : await readPem('ca_cert', caCert, source);
  if (root !== undefined && !CERTIFICATE.test(root)) {
    throw new SettingsError(
      'ca_cert',
      `Expected \`ca_cert\` to hold a PEM certificate, got \`${caCert}\``,
      source,
    );
  }
  CERTIFICATE.lastIndex = 0;
  if (cert === undefined)
    return {
      rootCertificate: root ? Buffer.from(root) : undefined,
      privateKey: undefined,
      certChain: undefined,
    };
  const pem = await readPem('cert', cert, source);
  const chain = pem.match(CERTIFICATE)?.join('');
  if (chain === undefined) {
    throw new SettingsError('cert', `Expected \`cert\` to hold a PEM certificate, got \`${cert}\``, source);
  }
  const keyPem = certKey === undefined ? pem : await readPem('cert_key', certKey, source);
  const key = keyPem.match(PRIVATE_KEY)?.join('');
  if (key === undefined) {
    const where = certKey === undefined ? 'cert' : 'cert_key';
    throw new SettingsError(
      where,
      `Expected \`${where}\` to hold a PEM private key, got \`${certKey ?? cert}\`: put the key in the same file or name it with cert_key`,
      source,
    );
  }
  return {
    rootCertificate: root === undefined ? undefined : Buffer.from(root),
    privateKey: Buffer.from(key),
    certChain: Buffer.from(chain),
  };
}
