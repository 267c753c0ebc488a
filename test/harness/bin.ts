import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

export const ETCD_MISSING =
  "etcd not found: install Debian's etcd-server and etcd-client (apt-get install -y etcd-server etcd-client)";

export async function onPath(command: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      await access(join(dir, command), constants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

export async function assertEtcdInstalled(): Promise<void> {
  const [etcd, etcdctl] = await Promise.all([onPath('etcd'), onPath('etcdctl')]);
  if (!etcd || !etcdctl) throw new Error(ETCD_MISSING);
}
