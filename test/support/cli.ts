import { runCli } from '../../src/cli/program.js';

export interface CliRun {
  readonly code: number;
  /** What the command wrote, one entry per write (a help text is one entry, several lines). */
  readonly stdout: readonly string[];
  readonly stderr: readonly string[];
}

/**
 * Runs one command line through the CLI's entry function, in this process:
 * the same parsing, help and exit codes as the binary, without a node start.
 * For commands that never reach etcd (usage errors, --help, --version).
 */
export async function cliInProcess(...args: string[]): Promise<CliRun> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const code = await runCli(args, {
    stdout: (line) => stdout.push(line),
    stderr: (line) => stderr.push(line),
    stopped: new Promise<void>(() => {}),
  });
  return { code, stdout, stderr };
}
