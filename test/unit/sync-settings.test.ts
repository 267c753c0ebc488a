import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Debouncer, runCommand, withVariables } from '../../src/cli/hooks.js';
import { loadSyncSettings } from '../../src/cli/sync-settings.js';
import { SettingsError } from '../../src/errors.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'link-etcd-sync-settings-'));
  await mkdir(join(dir, 'link', 'etcd'), { recursive: true });
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const conf = (text: string) => writeFile(join(dir, 'link', 'etcd', 'sync.conf'), text);

describe('daemon settings', () => {
  it('has defaults without sync.conf', async () => {
    expect(await loadSyncSettings(dir, {}, {})).toMatchObject({
      prefix: '/',
      conflict: 'etcd-wins',
      allowMassDelete: false,
      fullReconcile: 300,
      maxDeleteShare: 0.5,
      logLevel: 'info',
      reloadSignal: 'SIGHUP',
      hooks: [],
    });
  });

  it('layers flags over LINK_ETCD_* over sync.conf', async () => {
    await conf('[SYNC]\nprefix = /file\nconflict = file-wins\nfull_reconcile = 60\nlog_level = debug\n');
    const env = { LINK_ETCD_CONFLICT: 'newest', LINK_ETCD_PREFIX: '/env' };
    expect(await loadSyncSettings(dir, { prefix: '/flag' }, env)).toMatchObject({
      prefix: '/flag',
      conflict: 'newest',
      fullReconcile: 60,
      logLevel: 'debug',
    });
  });

  it('names the source of a wrong value', async () => {
    await conf('[SYNC]\nconflict = coin-flip\n');
    const error = await loadSyncSettings(dir, {}, {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SettingsError);
    expect((error as Error).message).toMatch(
      /`conflict`.*one of etcd-wins, file-wins, newest, got `coin-flip`.*sync\.conf/,
    );
    await conf('[SYNC]\n');
    await expect(loadSyncSettings(dir, {}, { LINK_ETCD_FULL_RECONCILE: '-3' })).rejects.toThrow(
      /`full_reconcile`.*got `-3` in \$LINK_ETCD_FULL_RECONCILE/,
    );
  });

  it('reads [HOOK name] sections', async () => {
    await conf(
      '[SYNC]\n\n[HOOK nginx]\nglob = nginx/*.conf\ncheck_cmd = nginx -t -c {file}\nreload_cmd = nginx -s reload\nwait_min = 0.2\nwait_max = 2\n',
    );
    expect((await loadSyncSettings(dir, {}, {})).hooks).toEqual([
      {
        name: 'nginx',
        glob: 'nginx/*.conf',
        checkCmd: 'nginx -t -c {file}',
        reloadCmd: 'nginx -s reload',
        waitMin: 0.2,
        waitMax: 2,
        timeout: 30,
      },
    ]);
    await conf('[HOOK bad]\ncheck_cmd = true\n');
    await expect(loadSyncSettings(dir, {}, {})).rejects.toThrow(/needs a `glob`/);
  });
});

describe('sync.conf: inline comments, unknown keys, globs that match nothing', () => {
  it('reads a value without its inline comment, commands as written', async () => {
    await mkdir(join(dir, 'nginx'), { recursive: true });
    await writeFile(join(dir, 'nginx', 'site.conf'), '[S]\na = 1\n');
    await conf(
      [
        '[SYNC]',
        'conflict = file-wins   ; etcd-wins | file-wins | newest',
        'full_reconcile = 60 # seconds',
        'exec = myapp --config /etc/myapp ; echo started',
        '[HOOK nginx]',
        'glob = nginx/*.conf   ; conf paths, relative to the conf dir',
        'reload_cmd = nginx -s reload # the shell reads this comment',
        'wait_min = 0.5   ; seconds of quiet before reload_cmd',
        '',
      ].join('\n'),
    );
    const warnings: string[] = [];
    const s = await loadSyncSettings(dir, {}, {}, (w) => warnings.push(w));
    expect(s.conflict).toBe('file-wins');
    expect(s.fullReconcile).toBe(60);
    expect(s.exec).toBe('myapp --config /etc/myapp ; echo started');
    expect(s.hooks[0]).toMatchObject({
      glob: 'nginx/*.conf',
      reloadCmd: 'nginx -s reload # the shell reads this comment',
      waitMin: 0.5,
    });
    expect(warnings).toEqual([]);
  });

  it('warns about a hook glob that matches no conf file, and about unknown keys', async () => {
    await conf(
      '[SYNC]\nconflcit = newest\n[HOOK web]\nglob = nginx/*.conf\nreload_cmd = true\nwiat_min = 1\n',
    );
    const warnings: string[] = [];
    await loadSyncSettings(dir, {}, {}, (w) => warnings.push(w));
    expect(warnings).toContainEqual(
      expect.stringMatching(/`conflcit` in \[SYNC\].*did you mean `conflict`\?/),
    );
    expect(warnings).toContainEqual(
      expect.stringMatching(/`wiat_min` in \[HOOK web\].*did you mean `wait_min`\?/),
    );
    expect(warnings).toContainEqual(
      expect.stringMatching(/hook `web` .*glob `nginx\/\*\.conf` matches no conf file under /),
    );
  });
});

describe('Debouncer (consul-template wait min/max)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires once, min after the last poke, but no later than max after the first', () => {
    vi.useFakeTimers();
    let fired = 0;
    const d = new Debouncer(100, 250, () => fired++);
    d.poke();
    vi.advanceTimersByTime(80);
    d.poke();
    vi.advanceTimersByTime(99);
    expect(fired).toBe(0);
    vi.advanceTimersByTime(1);
    expect(fired).toBe(1);
    // A steady stream of pokes still fires at max.
    for (let t = 0; t < 260; t += 50) {
      d.poke();
      vi.advanceTimersByTime(50);
    }
    expect(fired).toBe(2);
  });
});

describe('hook commands', () => {
  it('pass {file} and {path} through the environment: a hostile conf path cannot inject a command', async () => {
    const marker = join(dir, 'owned');
    const path = `x$(touch ${marker})'; touch ${marker}; '.conf`;
    for (const command of ['echo {path}', 'echo "{path}"', "echo '{path}'"]) {
      const { code } = await runCommand(command, { path, file: '/tmp/f' }, 5);
      expect(code).toBe(0);
    }
    // However the command quotes a placeholder, the value arrives as one word, unparsed.
    for (const command of ["printf '<%s>' {path}", 'printf \'<%s>\' "{path}"', "printf '<%s>' '{path}'"]) {
      const { output } = await runCommand(command, { path: 'a b/c "d".conf' }, 5);
      expect(output).toBe('<a b/c "d".conf>');
    }
    expect(withVariables('nginx -t -c {file}')).toBe('nginx -t -c "$LINK_ETCD_FILE"');
    expect(withVariables('test -n "x{path}"')).toBe('test -n "x$LINK_ETCD_PATH"');
    expect(withVariables("echo '{file}'")).toBe(`echo ''"$LINK_ETCD_FILE"''`);
    await expect(import('node:fs/promises').then((fs) => fs.access(marker))).rejects.toThrow();
  });

  it('kills a command that outlives its timeout, with what it started', async () => {
    const started = Date.now();
    const { code, output } = await runCommand('sleep 30 & sleep 30', {}, 0.3);
    expect(code).not.toBe(0);
    expect(output).toContain('killed after 0.3 s');
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
