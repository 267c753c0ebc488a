import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { ExitError, LinkEtcdError } from '../errors.js';
import { EtcdMiddleware, type MiddlewareOptions } from '../middleware/middleware.js';
import { SYNC_DEFAULTS } from '../sync/defaults.js';
import { CONFLICT_POLICY_NAMES as CONFLICT_POLICIES } from '../sync/merge.js';
import { describeStatus, doctorProblems } from './doctor.js';
import { LOG_FORMATS } from './logger.js';
import { parseCliValue } from './parse-value.js';
import { runSync } from './sync-command.js';
import { LOG_LEVELS, type SyncKey } from './sync-settings.js';

export interface CliIo {
  readonly stdout: (line: string) => void;
  readonly stderr: (line: string) => void;
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM). */
  readonly stopped: Promise<void>;
  /** Registers what to do on SIGHUP (re-read the settings). */
  readonly onReload?: (handler: () => void) => void;
}

interface GlobalFlags {
  endpoints?: string;
  confDir?: string;
}

/** The package's own version: dist/cli/ sits two folders below package.json, in the repo and once installed. */
const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

function middleware(flags: GlobalFlags): EtcdMiddleware {
  const options: MiddlewareOptions = {};
  // The same precedence as sync: the flag, then LINK_ETCD_ENDPOINTS, then middleware.conf.
  const endpoints = flags.endpoints ?? (process.env.LINK_ETCD_ENDPOINTS || undefined);
  if (endpoints !== undefined) options.endpoints = endpoints;
  if (flags.confDir !== undefined) options.confDir = flags.confDir;
  return new EtcdMiddleware(options);
}

async function withClient<T>(flags: GlobalFlags, work: (c: EtcdMiddleware) => Promise<T>): Promise<T> {
  const client = middleware(flags);
  try {
    return await work(client);
  } finally {
    await client.close();
  }
}

/**
 * Runs one command line and returns the exit code: 0 ok, 1 failure, 2 usage.
 * Only this function catches every error; the rest throw typed ones.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const program = new Command('link-etcd')
    .description('etcd <-> .conf files: the dict protocol of link.etcd on the command line')
    .version(VERSION)
    .addOption(
      new Option('--endpoints <urls>', 'etcd endpoints, comma-separated (overrides middleware.conf)'),
    )
    .addOption(new Option('--conf-dir <dir>', 'configuration directory (default $B3J0F_CONF_DIR or ~/etc)'))
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout(s.replace(/\n$/, '')),
      writeErr: (s) => io.stderr(s.replace(/\n$/, '')),
    })
    .showHelpAfterError('(run link-etcd --help for usage)');
  const flags = () => program.opts<GlobalFlags>();

  program
    .command('get')
    .description('print the text at PATH, or the tree under it as JSON')
    .argument('<path>')
    .action(async (path: string) => {
      const value = await withClient(flags(), (c) => c.get(path));
      io.stdout(typeof value === 'string' ? value : JSON.stringify(value));
    });
  program
    .command('set')
    .description('write VALUE at PATH: a JSON object or array becomes a tree, anything else is text')
    .argument('<path>')
    .argument('<value>')
    .action(async (path: string, value: string) => {
      await withClient(flags(), (c) => c.set(path, parseCliValue(value)));
    });
  program
    .command('del')
    .description('delete PATH and everything under it')
    .argument('<path>')
    .action(async (path: string) => {
      await withClient(flags(), (c) => c.delete(path));
    });
  program
    .command('watch')
    .description('print every change under the key PREFIX as one JSON object a line, until stopped')
    .argument('<prefix>')
    .action(async (prefix: string) => {
      await withClient(flags(), async (c) => {
        let failure: unknown;
        const done = new Promise<void>((resolve) => {
          c.watch(prefix).subscribe({
            next: (e) =>
              io.stdout(JSON.stringify({ type: e.type, key: e.key, value: e.value, revision: e.revision })),
            error: (err: unknown) => {
              failure = err;
              resolve();
            },
            complete: resolve,
          });
        });
        await Promise.race([done, io.stopped]);
        if (failure !== undefined) throw failure;
      });
    });

  program
    .command('doctor')
    .description('check the connection: endpoints, cluster id, members, leader, version, auth, latency')
    .option('--json', 'print one JSON object')
    .action(async (opts: { json?: boolean }) => {
      const status = await withClient(flags(), (c) => c.clusterStatus());
      const problems = doctorProblems(status);
      if (opts.json) io.stdout(JSON.stringify({ ...status, healthy: problems.length === 0, problems }));
      else for (const line of describeStatus(status, problems)) io.stdout(line);
      if (problems.length > 0) throw new ExitError(1);
    });

  program
    .command('sync')
    .description('mirror every .conf file under the conf dir with etcd, both ways, until stopped')
    .option(
      '--prefix <prefix>',
      `etcd key prefix in front of every conf path (default ${SYNC_DEFAULTS.prefix})`,
    )
    .addOption(
      new Option(
        '--conflict <policy>',
        `who wins when both sides changed a key (default ${SYNC_DEFAULTS.conflict})`,
      ).choices(CONFLICT_POLICIES),
    )
    .option('--once', 'reconcile once, then exit (init containers, cron)')
    .option('--dry-run', 'print what would change, both ways, and exit')
    .option(
      '--rebuild-base',
      'forget what both sides last agreed on and merge them as a union once (nothing deleted): refill a wiped etcd from the files',
    )
    .option(
      '--state-dir <dir>',
      'where the base journal lives (default $STATE_DIRECTORY, $XDG_STATE_HOME/link-etcd)',
    )
    .option('--allow-mass-delete', 'carry over deletions the mass-deletion guard would hold back')
    .option(
      '--full-reconcile <seconds>',
      `seconds between full reconciles (default ${SYNC_DEFAULTS.fullReconcileSeconds})`,
    )
    .option(
      '--max-delete-share <share>',
      `share of mirrored keys one side may lose at once (default ${SYNC_DEFAULTS.maxDeleteShare})`,
    )
    .addOption(new Option('--log-level <level>', 'log level (default info)').choices(LOG_LEVELS))
    .addOption(
      new Option('--log-format <format>', 'json lines, or pretty (default: pretty on a terminal)').choices(
        LOG_FORMATS,
      ),
    )
    .option('--http <host:port>', 'serve /healthz, /readyz and /metrics (Prometheus) there')
    .option(
      '--local-etcd',
      'start a single-member etcd for this daemon (data in the state dir): laptops and demos',
    )
    .option(
      '--exec <command>',
      'run the app as a child after the first sync, signal it on changes, exit with it',
    )
    .option('--reload-signal <signal>', 'signal sent to the --exec child on changes (default SIGHUP)')
    .option('--allow-any-names', 'mirror conf paths outside the portable set (letters, digits, . _ - + @)')
    .option(
      '--allow-insecure-conf-dir',
      'run as root even on a conf dir others may write (StrictModes: see docs/SECURITY.md)',
    )
    .option(
      '--max-file-size <bytes>',
      `refuse conf files larger than this (default ${SYNC_DEFAULTS.maxFileBytes})`,
    )
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      const { once, dryRun, rebuildBase, ...rest } = opts;
      const flagsGiven: Partial<Record<SyncKey, string | boolean>> = {};
      for (const [name, value] of Object.entries(rest)) {
        if (value !== undefined)
          flagsGiven[name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) as SyncKey] = value;
      }
      const code = await runSync(
        flags(),
        {
          once: once === true,
          dryRun: dryRun === true,
          rebuildBase: rebuildBase === true,
          flags: flagsGiven,
        },
        io,
      );
      if (code !== 0) throw new ExitError(code);
    });

  program
    .command('status')
    .description(
      'is every file in sync? asks the daemon at --http (GET /status), else computes it offline without writing; exit 1 when something needs a person',
    )
    .option('--json', 'print one JSON object (the shape of GET /status)')
    .option('--http <host:port>', "the daemon's --http address (default: sync.conf's http)")
    .option('--offline', 'do not ask the daemon: compute from the files, etcd and the base')
    .option('--prefix <prefix>', `etcd key prefix (default ${SYNC_DEFAULTS.prefix})`)
    .option('--state-dir <dir>', 'where the base journal lives (as for sync)')
    .action(
      async (opts: {
        json?: boolean;
        http?: string;
        offline?: boolean;
        prefix?: string;
        stateDir?: string;
      }) => {
        const { runStatus } = await import('./commands.js');
        const code = await runStatus(flags(), opts, io);
        if (code !== 0) throw new ExitError(code);
      },
    );

  const conflicts = program
    .command('conflicts')
    .description(
      'list open conflict records: file, key, both values (secret-looking ones masked), when, who won',
    )
    .option('--json', 'print one JSON array')
    .option('--prefix <prefix>', `etcd key prefix (default ${SYNC_DEFAULTS.prefix})`)
    .action(async (opts: { json?: boolean; prefix?: string }) => {
      const { runConflictsList } = await import('./commands.js');
      await runConflictsList(flags(), opts, io);
    });
  conflicts
    .command('resolve')
    .description(
      "keep the winner's or the loser's value of FILE's open conflicts (or KEY's: KEY or SECTION/KEY) and archive the record as <file>.resolved-<stamp>",
    )
    .argument('<file>', 'conf path (relative to the conf dir) or the record')
    .argument('[key]', 'KEY or SECTION/KEY (default: every key of the file)')
    .addOption(
      new Option('--keep <side>', 'which value stays').choices(['winner', 'loser']).makeOptionMandatory(),
    )
    .option('--prefix <prefix>', `etcd key prefix (default ${SYNC_DEFAULTS.prefix})`)
    .action(
      async (file: string, key: string | undefined, opts: { keep: 'winner' | 'loser'; prefix?: string }) => {
        // Commander gives `--prefix` to the parent when both define it.
        const prefix = opts.prefix ?? conflicts.opts<{ prefix?: string }>().prefix;
        const { runConflictsResolve } = await import('./commands.js');
        await runConflictsResolve(
          flags(),
          file,
          key,
          { keep: opts.keep, ...(prefix === undefined ? {} : { prefix }) },
          io,
        );
      },
    );

  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof ExitError) return error.exitCode;
    if (error instanceof CommanderError) {
      // --help and --version exit through here with code 0.
      return error.exitCode === 0 ? 0 : 2;
    }
    const message = error instanceof LinkEtcdError || error instanceof Error ? error.message : String(error);
    io.stderr(`link-etcd: ${message.split('\n')[0]}`);
    return 1;
  }
}
