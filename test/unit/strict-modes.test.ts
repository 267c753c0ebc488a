import { chmod, chown, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { strictModesRefusal } from '../../src/files/strict-modes.js';
import { cliInProcess } from '../support/cli.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function fresh(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'link-etcd-strict-'));
  dirs.push(d);
  return d;
}

// As root (uid 0 passed explicitly, so the rows hold whoever runs the tests; chown needs root).
const asRoot = process.getuid?.() === 0;

describe.skipIf(!asRoot)(
  'StrictModes for a daemon running as root (these rows chown: they need root)',
  () => {
    it('accepts a root-owned 0700 conf dir under sticky /tmp', async () => {
      expect(await strictModesRefusal(await fresh(), 0)).toBeUndefined();
    });

    it.each([
      [0o777, /writable by its group or others \(mode 0777\)/],
      [0o775, /mode 0775/],
      [0o1777, /mode 1777/],
    ])('refuses a conf dir of mode %s', async (mode, reason) => {
      const d = await fresh();
      await chmod(d, mode);
      expect(await strictModesRefusal(d, 0)).toMatch(reason);
    });

    it('refuses a conf dir owned by another user', async () => {
      const d = await fresh();
      await chown(d, 1000, 1000);
      expect(await strictModesRefusal(d, 0)).toMatch(/owned by uid 1000, not root/);
    });

    it('makes `link-etcd sync` exit 1 with one line before it touches etcd, unless --allow-insecure-conf-dir', async () => {
      const d = await fresh();
      await chmod(d, 0o777);
      const refused = await cliInProcess('--conf-dir', d, 'sync', '--once', '--endpoints=http://127.0.0.1:1');
      expect(refused.code).toBe(1);
      expect(refused.stderr).toEqual([
        expect.stringMatching(
          /refusing to run as root on the conf dir .*\(mode 0777\).*--allow-insecure-conf-dir/,
        ),
      ]);
      const allowed = await cliInProcess(
        '--conf-dir',
        d,
        'sync',
        '--once',
        '--allow-insecure-conf-dir',
        '--log-level=silent',
        '--endpoints=http://127.0.0.1:1',
      );
      // Past the check: now it is the unreachable etcd that stops it.
      expect(allowed.stderr.join('\n')).toMatch(/127\.0\.0\.1:1/);
    });

    it('refuses a conf dir below a folder others may write in, naming that folder', async () => {
      const d = await fresh();
      await chmod(d, 0o777);
      await mkdir(join(d, 'conf'), { mode: 0o700 });
      expect(await strictModesRefusal(join(d, 'conf'), 0)).toMatch(new RegExp(`^${d} is writable`));
    });
  },
);

it('checks nothing when not running as root', async () => {
  const d = await fresh();
  await chmod(d, 0o777);
  expect(await strictModesRefusal(d, 1000)).toBeUndefined();
});
