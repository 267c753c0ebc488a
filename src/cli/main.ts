#!/usr/bin/env node
import { runCli } from './program.js';

const stopped = new Promise<void>((resolve) => {
  process.once('SIGINT', resolve);
  process.once('SIGTERM', resolve);
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
