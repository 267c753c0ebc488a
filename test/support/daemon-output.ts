import type { ChildProcess } from 'node:child_process';

/** What a spawned `link-etcd` process says: its JSON log lines on stdout, stderr, and how it ended. */
export interface DaemonOutput {
  /** Each stdout line parsed; a line that is not JSON is kept as `{ msg, raw: true }`. */
  readonly lines: Array<Record<string, unknown>>;
  /** The stdout lines as printed. */
  readonly raw: string[];
  readonly stderr: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The exit code (null when a signal ended it). */
  readonly code: Promise<number | null>;
}

export function followOutput(child: ChildProcess): DaemonOutput {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const stderr: string[] = [];
  let buffer = '';
  child.stdout?.on('data', (chunk) => {
    buffer += String(chunk);
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    for (const line of parts) {
      raw.push(line);
      try {
        lines.push(JSON.parse(line));
      } catch {
        lines.push({ msg: line, raw: true });
      }
    }
  });
  child.stderr?.on('data', (chunk) => stderr.push(String(chunk)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { lines, raw, stderr, exited, code: exited.then((e) => e.code) };
}
