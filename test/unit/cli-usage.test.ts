import { describe, expect, it } from 'vitest';
import { cliInProcess } from '../support/cli.js';

const HINT = '(run link-etcd --help for usage)';

describe('link-etcd usage and help (in process, through runCli)', () => {
  it.each([
    [['frobnicate'], /^error: unknown command 'frobnicate'/],
    [['get'], /^error: missing required argument 'path'/],
    [
      ['sync', '--conflict=coin-flip'],
      /^error: option '--conflict <policy>' argument 'coin-flip' is invalid/,
    ],
  ])(
    'exits 2 on the usage error %j: one error line and the hint on stderr, nothing on stdout',
    async (args, error) => {
      const res = await cliInProcess(...args);
      expect(res.code).toBe(2);
      expect(res.stdout).toEqual([]);
      expect(res.stderr).toEqual([expect.stringMatching(error), HINT]);
      expect(res.stderr[0]).not.toContain('\n');
    },
  );

  it('exits 0 on --help with the help on stdout', async () => {
    const help = await cliInProcess('--help');
    expect(help).toMatchObject({ code: 0, stderr: [] });
    expect(help.stdout.join('\n')).toMatch(/^Usage: link-etcd /);
    expect(help.stdout.join('\n')).toMatch(/watch/);
  });

  it.each(['get', 'set', 'del', 'watch', 'doctor', 'sync'])('exits 0 on `%s --help`', async (command) => {
    const sub = await cliInProcess(command, '--help');
    expect(sub).toMatchObject({ code: 0, stderr: [] });
    expect(sub.stdout.join('\n')).toContain(`Usage: link-etcd ${command}`);
  });

  it('prints the version on --version', async () => {
    expect(await cliInProcess('--version')).toEqual({
      code: 0,
      stdout: [expect.stringMatching(/^\d+\.\d+\.\d+$/)],
      stderr: [],
    });
  });
});
