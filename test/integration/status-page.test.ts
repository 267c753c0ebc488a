import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import type { RecentReport } from '../../src/cli/status-page.js';
import type { EtcdServer } from '../harness/etcd.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/wait.js';
import { followOutput } from '../support/daemon-output.js';
import { useEtcd } from '../support/lifecycle.js';

const main = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** Values of secret-looking keys: neither the page nor its JSON may ever carry them. */
const SECRET_IN_FILE = 'hunter2-file-secret';
const SECRET_IN_ETCD = 'tok-etcd-secret-42';

let etcd: EtcdServer;
let counter = 0;
const { defer } = useEtcd((started) => {
  etcd = started;
});

function launch(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/** Why no headless Chromium runs here, or undefined when one does. */
async function browserProblem(): Promise<string | undefined> {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (apt-get install -y chromium, as .ci/run does)`;
  try {
    const browser = await launch();
    await browser.close();
    return undefined;
  } catch (error) {
    return `${CHROMIUM} does not start: ${String((error as Error).message).split('\n')[0]}`;
  }
}

const noBrowser = await browserProblem();
if (noBrowser !== undefined) console.warn(`status page browser test skipped: ${noBrowser}`);

/** A conf dir with app.conf (one plain key, one secret-looking one) and a daemon serving --http on it. */
async function startDaemon(): Promise<{ port: number; prefix: string; confDir: string }> {
  const confDir = await mkdtemp(join(tmpdir(), 'link-etcd-page-conf-'));
  const stateDir = await mkdtemp(join(tmpdir(), 'link-etcd-page-state-'));
  defer(() => rm(confDir, { recursive: true, force: true }));
  defer(() => rm(stateDir, { recursive: true, force: true }));
  const prefix = `/page${counter++}/`;
  await writeFile(join(confDir, 'app.conf'), `[S]\nk = 1\ndb_password = ${SECRET_IN_FILE}\n`);
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      main,
      `--endpoints=${etcd.clientUrl}`,
      `--conf-dir=${confDir}`,
      'sync',
      `--state-dir=${stateDir}`,
      `--prefix=${prefix}`,
      '--log-format=json',
      `--http=127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const { lines } = followOutput(child);
  defer(() => child.kill('SIGKILL'));
  await waitFor(() => lines.some((l) => l.msg === 'in sync; following both sides'), { timeout: 20_000 });
  return { port, prefix, confDir };
}

describe('the status page at / of --http', () => {
  it('serves one self-contained HTML page with a CSP, and no secret value anywhere it reads', async () => {
    const { port } = await startDaemon();
    const res = await fetch(`http://127.0.0.1:${port}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toMatch(/script-src 'nonce-[A-Za-z0-9+/=]+'/);
    expect(csp).not.toContain('unsafe-eval');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await res.text();
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('<title>link-etcd status</title>');
    // Self-contained: no external script, style, image or link.
    expect(html).not.toMatch(/<(script|img|link|iframe)[^>]*\b(src|href)=/i);
    expect(html).not.toMatch(/https?:\/\//);
    const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
    expect(html).toContain(`<script nonce="${nonce}">`);
    expect(html).not.toContain(SECRET_IN_FILE);

    // The page's two sources: the status, and the recent changes (keys, never values).
    const recent = (await (await fetch(`http://127.0.0.1:${port}/recent`)).json()) as RecentReport;
    expect(recent.toEtcd.map((c) => c.key.split('/').slice(-2).join('/')).sort()).toEqual([
      'S/db_password',
      'S/k',
    ]);
    expect(recent.toFile).toEqual([]);
    const served = await (await fetch(`http://127.0.0.1:${port}/recent`)).text();
    expect(served).not.toContain(SECRET_IN_FILE);
    expect(await (await fetch(`http://127.0.0.1:${port}/status`)).text()).not.toContain(SECRET_IN_FILE);
    // A second load gets another nonce.
    const again = (await fetch(`http://127.0.0.1:${port}/`)).headers.get('content-security-policy');
    expect(again).not.toBe(csp);
  });

  it.skipIf(noBrowser !== undefined)(
    `in headless Chromium: shows a file's state and follows an etcd put without a reload${noBrowser === undefined ? '' : ` (skipped: ${noBrowser})`}`,
    async () => {
      const { port, prefix, confDir } = await startDaemon();
      const browser = await launch();
      defer(() => browser.close());
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text());
      });
      page.on('pageerror', (e) => problems.push(String(e)));
      const loads: string[] = [];
      page.on('load', () => loads.push(page.url()));
      /** What a person sees there, as rendered (a playwright locator's inner text, not the DOM's). */
      const shown = async (selector: string) => (await page.locator(selector).allInnerTexts()).join('\n');

      await page.goto(`http://127.0.0.1:${port}/`);
      const fileRow = page.locator('#files tr[data-file="app.conf"]');
      await fileRow.waitFor({ timeout: 10_000 });
      expect(await fileRow.getAttribute('data-state')).toBe('in-sync');
      expect(await shown('#files tr[data-file="app.conf"]')).toContain('in sync');
      expect(await shown('#verdict')).toBe('everything is in sync');
      // The first reconcile pushed both keys to etcd.
      await page.locator('#to-etcd tr[data-key$="/S/k"]').waitFor({ timeout: 10_000 });
      expect(await shown('#to-file')).toContain('nothing yet');
      const before = await shown('body');
      await page.evaluate(() => {
        (globalThis as unknown as { marker: number }).marker = 42;
      });

      await etcd.etcdctl('put', `${prefix}app.conf/S/k`, '2');
      await etcd.etcdctl('put', `${prefix}app.conf/S/api_token`, SECRET_IN_ETCD);
      await waitFor(async () => (await readFile(join(confDir, 'app.conf'), 'utf8')).includes(SECRET_IN_ETCD));
      // The page catches up on its own: both keys land in "etcd -> file", the file back in sync.
      await page.locator('#to-file tr[data-key$="/S/k"]').waitFor({ timeout: 10_000 });
      await page.locator('#to-file tr[data-key$="/S/api_token"]').waitFor({ timeout: 10_000 });
      await waitFor(async () => (await fileRow.getAttribute('data-state')) === 'in-sync', {
        timeout: 10_000,
      });
      expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(42);
      expect(loads).toHaveLength(1);

      const after = await shown('body');
      for (const text of [before, after, await page.content()]) {
        expect(text).not.toContain(SECRET_IN_FILE);
        expect(text).not.toContain(SECRET_IN_ETCD);
      }
      expect(problems).toEqual([]);
      console.log(`status page after the etcd put, as Chromium rendered it:\n${after}`);
    },
  );
});
