import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface Certificates {
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** Client certificate followed by its key, for clients that take a single PEM. */
  clientBundleFile: string;
}

function openssl(cwd: string, ...args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd }, (err, _stdout, stderr) =>
      err
        ? reject(new Error(`openssl ${args.join(' ')} failed: ${stderr.trim() || err.message}`))
        : resolve(),
    );
  });
}

// An explicit config keeps the result independent of the distribution's openssl.cnf defaults.
const REQ_CONFIG = `[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`;

// Go (etcd) ignores the CN for host names and requires a SAN; it also enforces extended key usage.
const leafExtensions = (extendedKeyUsage: string, san?: string) =>
  [
    'basicConstraints = critical,CA:FALSE',
    'keyUsage = critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage = ${extendedKeyUsage}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
    ...(san ? [`subjectAltName = ${san}`] : []),
    '',
  ].join('\n');

/** EC P-256 throughout: generated in milliseconds, accepted by Go's crypto/tls and by Node/grpc-js. */
export async function makeCertificates(dir: string): Promise<Certificates> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'req.cnf'), REQ_CONFIG);
  const genKey = (file: string) =>
    openssl(dir, 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file);

  await genKey('ca.key');
  // biome-ignore format: keep the openssl argument pairs readable
  await openssl(dir, 'req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=link-etcd test CA',
    '-config', 'req.cnf', '-extensions', 'ca', '-days', '3650', '-out', 'ca.crt');

  const leaf = async (name: string, cn: string, extensions: string) => {
    await writeFile(join(dir, `${name}.ext`), extensions);
    await genKey(`${name}.key`);
    // biome-ignore format: keep the openssl argument pairs readable
    await openssl(dir, 'req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`,
      '-config', 'req.cnf', '-out', `${name}.csr`);
    // biome-ignore format: keep the openssl argument pairs readable
    await openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key',
      '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '3650',
      '-extfile', `${name}.ext`, '-out', `${name}.crt`);
  };
  await Promise.all([
    // clientAuth too: etcd 3.4's built-in JSON gateway dials its own gRPC port presenting the server cert,
    // which a server with --trusted-ca-file rejects without that usage ("bad certificate", /v3/* fails).
    leaf('server', 'localhost', leafExtensions('serverAuth, clientAuth', 'IP:127.0.0.1,DNS:localhost')),
    // CN=root: with client-cert-auth and auth enabled, etcd takes the user name from the CN.
    leaf('client', 'root', leafExtensions('clientAuth')),
  ]);

  const file = (name: string) => join(dir, name);
  const [clientCert, clientKey] = await Promise.all([
    readFile(file('client.crt')),
    readFile(file('client.key')),
  ]);
  await writeFile(file('client.pem'), Buffer.concat([clientCert, clientKey]));
  return {
    caFile: file('ca.crt'),
    serverCertFile: file('server.crt'),
    serverKeyFile: file('server.key'),
    clientCertFile: file('client.crt'),
    clientKeyFile: file('client.key'),
    clientBundleFile: file('client.pem'),
  };
}
