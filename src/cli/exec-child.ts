import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Logger } from '../log.js';

export interface ExecChild {
  /** Sends the reload signal (debounced by the caller). */
  reload(): void;
  /** Forwards a stop signal; the child's exit ends the daemon. */
  stop(signal: NodeJS.Signals): void;
  /** The child's exit code (128 + signal number when a signal ended it). */
  readonly exited: Promise<number>;
}

/** How long the app has to stop after SIGTERM/SIGINT before it is killed. */
const STOP_GRACE_MS = 10_000;

/**
 * consul-template's exec mode: the app runs as our child, started after the
 * first full sync so it reads complete files, signalled on each change, and
 * its exit is ours. No restart policy here: a supervisor (systemd,
 * Kubernetes) restarts the pair, which keeps one source of restarts.
 */
export function startChild(command: string, reloadSignal: NodeJS.Signals, logger: Logger): ExecChild {
  const child: ChildProcess = spawn('/bin/sh', ['-c', `exec ${command}`], { stdio: 'inherit' });
  logger.info({ exec: command, pid: child.pid }, 'started the app');
  const exited = new Promise<number>((resolve) => {
    child.on('error', (error) => {
      logger.error({ err: error, exec: command }, 'could not start the app');
      resolve(127);
    });
    child.on('exit', (code, signal) => {
      // As a shell reports it: 128 + the signal's number.
      const status = code ?? 128 + (signal ? (constants.signals[signal] ?? 1) : 1);
      logger.info({ exec: command, code, signal }, 'the app exited');
      resolve(status);
    });
  });
  return {
    reload: () => {
      if (child.exitCode === null) {
        logger.info({ signal: reloadSignal, pid: child.pid }, 'configuration changed: signalling the app');
        child.kill(reloadSignal);
      }
    },
    stop: (signal) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      // An app that ignores the stop signal is killed after a grace period: the daemon must not hang.
      setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }, STOP_GRACE_MS).unref();
    },
    exited,
  };
}
