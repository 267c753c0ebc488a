import { randomBytes } from 'node:crypto';

/**
 * The status page at `/` of the `--http` endpoint: one self-contained HTML
 * page (no framework, no external asset) that polls `/status` and
 * `/recent` every two seconds and shows what `link-etcd status` prints,
 * with the recent changes each way. It shows keys, never values: nothing of
 * a secret-looking key can reach it.
 */

export type Direction = 'to_etcd' | 'to_file';

export interface RecentChange {
  /** When the change landed (ISO 8601). */
  readonly at: string;
  readonly direction: Direction;
  readonly file: string;
  readonly op: 'put' | 'delete';
  readonly key: string;
  /** Why it was written (the engine's reason: `changed`, `new`, ...). */
  readonly reason: string;
}

/** What `GET /recent` serves: the newest first, at most {@link RECENT_KEPT} each way. */
export interface RecentReport {
  readonly toEtcd: readonly RecentChange[];
  readonly toFile: readonly RecentChange[];
}

export const RECENT_KEPT = 20;

/** A ring of the last {@link RECENT_KEPT} landed changes per direction. */
export class RecentChanges {
  private readonly rings: Record<Direction, RecentChange[]> = { to_etcd: [], to_file: [] };

  constructor(private readonly kept = RECENT_KEPT) {}

  record(
    direction: Direction,
    file: string,
    changes: ReadonlyArray<{ readonly op: 'put' | 'delete'; readonly key: string; readonly reason: string }>,
  ): void {
    const ring = this.rings[direction];
    const at = new Date().toISOString();
    // The newest only: a bulk change of thousands of keys keeps the last few.
    for (const { op, key, reason } of changes.slice(-this.kept))
      ring.push({ at, direction, file, op, key, reason });
    if (ring.length > this.kept) ring.splice(0, ring.length - this.kept);
  }

  report(): RecentReport {
    return { toEtcd: [...this.rings.to_etcd].reverse(), toFile: [...this.rings.to_file].reverse() };
  }
}

/** `text` safe inside HTML text and quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The page's Content-Security-Policy: its own inline script (by nonce) and styles, requests to itself only. */
export function pageCsp(nonce: string): string {
  return [
    "default-src 'none'",
    "connect-src 'self'",
    `script-src 'nonce-${nonce}'`,
    "style-src 'unsafe-inline'",
    "img-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** The headers and body of `GET /`. */
export function statusPage(): { headers: Record<string, string>; body: string } {
  const nonce = randomBytes(16).toString('base64');
  return {
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': pageCsp(nonce),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
    },
    body: pageHtml(nonce),
  };
}

/** Every value the script shows goes in through textContent: the data never becomes markup. */
const SCRIPT = `
'use strict';
const $ = (id) => document.getElementById(id);
const el = (tag, text, cls) => {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
};
const row = (cells, cls) => {
  const tr = el('tr', undefined, cls);
  for (const c of cells) tr.append(el('td', c));
  return tr;
};
const fill = (id, rows, empty, cols) => {
  const body = $(id);
  body.replaceChildren(...(rows.length ? rows : [row([empty].concat(Array(cols - 1).fill('')), 'empty')]));
};
const LABEL = { 'in-sync': 'in sync', pending: 'pending', 'pending-to-etcd': 'to etcd',
  'pending-to-file': 'to file', failing: 'FAILING', conflict: 'CONFLICT' };
function showStatus(s) {
  const verdict = $('verdict');
  verdict.textContent = s.needsAttention.length ? 'needs a person' : s.inSync ? 'everything is in sync' : 'changes pending: not in sync yet';
  verdict.className = s.needsAttention.length ? 'bad' : s.inSync ? 'ok' : 'warn';
  fill('files', s.files.map((f) => {
    const extra = f.reasons.slice();
    if (f.conflicts) extra.push(f.conflicts + ' open conflict(s)');
    if (f.refused) extra.push(f.refused + ' key(s) refused');
    const tr = row([f.file, LABEL[f.state] || f.state, f.toEtcd + f.toFile ? f.toEtcd + ' / ' + f.toFile : '', extra.join('; ')], 'state-' + f.state);
    tr.dataset.file = f.file;
    tr.dataset.state = f.state;
    return tr;
  }), 'no mirrored files', 4);
  const attention = $('attention');
  attention.replaceChildren(...s.needsAttention.map((n) => el('li', n)));
  $('attention-box').hidden = s.needsAttention.length === 0;
  fill('conflicts', s.conflicts.map((c) => row([c.file, '[' + c.section + '] ' + c.key, c.winner + ' won, ' + c.loser + ' lost', c.state, c.at])), 'no conflict records', 5);
  fill('blocked', s.blocked.map((b) => row([b.side, b.deletions + ' of ' + b.of + ' keys', b.files + ' file(s)'])), 'nothing held back', 3);
  fill('refused', s.refused.map((r) => row([r.what, r.reason])), 'none', 2);
  $('watch').textContent = s.watch ? 'revision ' + s.watch.seenRevision + ' seen, ' + s.watch.appliedRevision + ' in the files (lag ' + s.watch.lag + ')' : 'n/a';
  $('reconcile').textContent = s.lastFullReconcile || 'not yet';
  $('counters').textContent = s.counters ? s.counters.toEtcd + ' to etcd, ' + s.counters.toFile + ' to files, ' + s.counters.conflicts + ' conflicts, ' + s.counters.retries + ' retries' : 'n/a';
}
function showRecent(r) {
  const rows = (list) => list.map((c) => {
    const tr = row([c.at.slice(11, 19), c.file, c.op, c.key, c.reason]);
    tr.dataset.key = c.key;
    return tr;
  });
  fill('to-etcd', rows(r.toEtcd), 'nothing yet', 5);
  fill('to-file', rows(r.toFile), 'nothing yet', 5);
}
async function get(path) {
  const res = await fetch(path, { cache: 'no-store', headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
  return res.json();
}
async function refresh() {
  try {
    const [s, r] = await Promise.all([get('status'), get('recent')]);
    showStatus(s);
    showRecent(r);
    $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    $('updated').className = '';
  } catch (e) {
    $('updated').textContent = 'daemon not answering (' + e.message + '), retrying';
    $('updated').className = 'bad';
  } finally {
    setTimeout(refresh, 2000);
  }
}
refresh();
`;

function pageHtml(nonce: string): string {
  const table = (id: string, heads: string[]) =>
    `<table><thead><tr>${heads.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody id="${escapeHtml(id)}"></tbody></table>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>link-etcd status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .3em; } h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .2em .6em; border-bottom: 1px solid #ddd; }
th { background: #f4f4f4; } td { font-family: ui-monospace, monospace; } tr.empty td { color: #888; font-family: inherit; }
.ok { color: #18794e; } .warn { color: #a16207; } .bad { color: #b91c1c; font-weight: bold; }
tr.state-failing td, tr.state-conflict td { color: #b91c1c; } tr.state-pending td, tr.state-pending-to-etcd td, tr.state-pending-to-file td { color: #a16207; }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(28em, 1fr)); gap: 0 2em; }
#updated { color: #666; font-size: .9em; } dl { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; } dd { margin: 0; }
</style>
</head>
<body>
<h1>link-etcd status: <span id="verdict">loading</span></h1>
<div id="updated">loading</div>
<div id="attention-box" hidden><h2 class="bad">Needs a person</h2><ul id="attention"></ul></div>
<h2>Files</h2>
${table('files', ['file', 'state', 'to etcd / to file', 'details'])}
<div class="cols">
<section><h2>Recent changes: file &rarr; etcd</h2>${table('to-etcd', ['time', 'file', 'op', 'key', 'why'])}</section>
<section><h2>Recent changes: etcd &rarr; file</h2>${table('to-file', ['time', 'file', 'op', 'key', 'why'])}</section>
</div>
<h2>Open conflicts</h2>
${table('conflicts', ['file', 'key', 'policy', 'state', 'when'])}
<h2>Held-back deletions</h2>
${table('blocked', ['side', 'deletions', 'files'])}
<h2>Refused names</h2>
${table('refused', ['name', 'reason'])}
<h2>Daemon</h2>
<dl><dt>watch</dt><dd id="watch"></dd><dt>last full reconcile</dt><dd id="reconcile"></dd><dt>since start</dt><dd id="counters"></dd></dl>
<script nonce="${escapeHtml(nonce)}">${SCRIPT}</script>
</body>
</html>
`;
}
