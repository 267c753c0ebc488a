import { type ChildProcess, spawn } from 'node:child_process';

/**
 * Runs `body` (sync fs calls; `fs`, `p` = node:path and `tryIt` in scope) in
 * a loop in another process, in `cwd`, until killed: a hostile writer that
 * can only reach the conf dir. `defer` kills it with the test. It also stops
 * by itself once its parent is gone: a crashed test worker must not leave it
 * spinning on a core. And it stops after `lifetimeMs`: if the code under
 * test regresses to a stalled event loop, the storm ends, the loop turns
 * again, and the test fails on its own timeout instead of hanging the run.
 */
export function attacker(
  cwd: string,
  body: string,
  defer: (cleanup: () => unknown) => void,
  lifetimeMs = 60_000,
): ChildProcess {
  const script = `const fs = require('node:fs'); const p = require('node:path');
    const tryIt = (f) => { try { f(); } catch {} };
    const parent = process.ppid;
    const end = Date.now() + ${lifetimeMs};
    for (let i = 0; ; i++) {
      ${body};
      if (i % 1000 === 0 && (process.ppid !== parent || Date.now() > end)) process.exit(0);
    }`;
  const child = spawn(process.execPath, ['-e', script], { cwd, stdio: 'ignore' });
  defer(() => {
    child.kill('SIGKILL');
  });
  return child;
}
