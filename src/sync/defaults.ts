/**
 * The daemon's defaults, in one place: the engine, the settings loader, the
 * CLI help and the README all read (or quote) these.
 */
export const SYNC_DEFAULTS = {
  /** Key prefix. */
  prefix: '/',
  /** Who wins when both sides changed a key since the base. */
  conflict: 'etcd-wins',
  /** Carry mass deletions over without a person's word. */
  allowMassDelete: false,
  /** Share of the mirrored keys one side may lose at once, across files, before deletions are held. */
  maxDeleteShare: 0.5,
  /** Seconds between full reconciles. */
  fullReconcileSeconds: 300,
  /** A conf file larger than this (bytes) is refused, not read: a 200 MB file must not take the daemon's memory. */
  maxFileBytes: 4_194_304,
  /** Mirror conf paths outside the portable name set (layout/mirrored.ts). */
  allowAnyNames: false,
  /** Run as root on a conf dir others may write (StrictModes, files/strict-modes.ts). */
  allowInsecureConfDir: false,
  /** How long a file must be quiet before a read that looks cut short (keys gone, no final newline, a parse error) counts (ms). */
  quietMs: 10,
} as const;
