#!/usr/bin/env node
import { runCli } from './program.js';

// `on`, not `once`: a terminal's Ctrl-C under `npm start` arrives twice (from the terminal and
// forwarded by npm), and a second SIGINT with no listener would kill the stopping daemon.
const stopped = new Promise<void>((resolve) => {
  process.on('SIGINT', () => resolve());
  process.on('SIGTERM', () => resolve());
});

const code = await runCli(process.argv.slice(2), {
  stdout: (line) => process.stdout.write(`${line}\n`),
  stderr: (line) => process.stderr.write(`${line}\n`),
  stopped,
  onReload: (handler) => {
    process.on('SIGHUP', handler);
  },
});
process.exitCode = code;
// Open handles (gRPC channels closing) must not keep a finished command alive.
setTimeout(() => process.exit(code), 1_000).unref();
