#!/usr/bin/env node
// Runs before `npm test`: the test harness needs real etcd and etcdctl binaries on PATH.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

const onPath = (command) =>
  (process.env.PATH ?? '').split(delimiter).some((dir) => {
    if (!dir) return false;
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
const installed = () => onPath('etcd') && onPath('etcdctl');

if (installed()) process.exit(0);

if (process.getuid?.() === 0 && onPath('apt-get')) {
  const run = (...args) =>
    spawnSync('apt-get', args, {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    }).status === 0;
  // The package may start a system etcd on :2379; the harness only uses fresh ports, so it is left alone.
  if (run('update', '-qq') && run('install', '-y', '-qq', 'etcd-server', 'etcd-client') && installed()) {
    process.exit(0);
  }
}

console.error('etcd is missing: run `sudo apt-get install -y etcd-server etcd-client`');
process.exit(1);
