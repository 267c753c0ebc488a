import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { waitFor } from '../test/harness/wait.js';

/** Clock ticks per second of /proc/<pid>/stat's CPU times (normally 100, so a 10 ms resolution). */
const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** CPU time (user + system) a process has used so far, in ms. */
export async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields 14 (utime) and 15 (stime); the command name (field 2) may hold spaces, so count from its ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[14 - 3]) + Number(fields[15 - 3])) * 1000) / ticksPerSecond;
}

/**
 * CPU time once the process has gone quiet (two readings 100 ms apart
 * agree): work a change leaves for after its file is visible (a base save,
 * a folder fsync, a log line) is then counted with that change, and a
 * window that starts here carries nothing over from earlier work.
 */
export async function quietCpuMs(pid: number): Promise<number> {
  let last = await cpuMs(pid);
  return waitFor(
    async () => {
      const current = await cpuMs(pid);
      const quiet = current === last;
      last = current;
      return quiet ? current : undefined;
    },
    { interval: 100, timeout: 5000, message: `process ${pid} never went quiet` },
  );
}

/** A `kB` line of /proc/<pid>/status (VmRSS, VmHWM), in MB. */
export async function statusMb(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return Math.round(kb / 1024);
}
