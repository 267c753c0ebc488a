import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/cli/metrics.js';
import type { EtcdMiddleware } from '../../src/middleware/middleware.js';

const DIR = join(import.meta.dirname, '../../examples/monitoring');
const DASHBOARD = join(DIR, 'grafana-dashboard.json');
const RULES = join(DIR, 'link-etcd.rules.yml');
const RULES_TEST = join(DIR, 'link-etcd.rules.test.yml');

/** Every link_etcd_* name in a text (PromQL, descriptions, template queries). */
const metricNames = (text: string) => new Set(text.match(/\blink_etcd_[a-z0-9_]+\b/g) ?? []);

/** The names a scrape of the daemon's registry can show, a histogram's _bucket, _sum and _count included. */
async function registryNames(): Promise<Set<string>> {
  const middleware = { watchStats: { reconnects: 0, resyncs: 0 } } as unknown as EtcdMiddleware;
  const { registry } = createMetrics(
    () => undefined,
    () => middleware,
  );
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram')
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${suffix}`);
  }
  return names;
}

type Yaml = string | Yaml[] | { [key: string]: Yaml };

/**
 * The YAML a Prometheus rules file uses, no more: block maps and lists, `|` block
 * scalars, plain and quoted scalars, whole-line comments. Anything else throws.
 */
function parseYaml(text: string): Yaml {
  const lines = text
    .split('\n')
    .map((raw) => ({ raw, indent: raw.search(/\S/), text: raw.trim() }))
    .filter((line) => line.text !== '' && !line.text.startsWith('#'));
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`YAML line "${lines[i]?.raw ?? '<end>'}": ${why}`);
  };
  const scalar = (value: string): string => {
    if (value.startsWith('"')) return JSON.parse(value) as string;
    if (value.startsWith("'")) return value.slice(1, -1).replaceAll("''", "'");
    if (/^[[{&*!|>]/.test(value)) fail('unsupported YAML');
    return value;
  };
  const isKey = (s: string) => /^[A-Za-z_][\w.-]*:(\s|$)/.test(s);
  const node = (indent: number): Yaml => (lines[i]?.text.startsWith('- ') ? list(indent) : map(indent));
  const list = (indent: number): Yaml[] => {
    const items: Yaml[] = [];
    for (let line = lines[i]; line?.indent === indent && line.text.startsWith('- '); line = lines[i]) {
      const rest = line.text.slice(2).trimStart();
      if (isKey(rest)) {
        lines[i] = { raw: line.raw, indent: line.raw.indexOf(rest), text: rest };
        items.push(map(line.raw.indexOf(rest)));
      } else {
        items.push(scalar(rest));
        i++;
      }
    }
    return items;
  };
  const map = (indent: number): { [key: string]: Yaml } => {
    const object: { [key: string]: Yaml } = {};
    for (let line = lines[i]; line?.indent === indent && !line.text.startsWith('- '); line = lines[i]) {
      const m = /^([A-Za-z_][\w.-]*):(?:\s+(.*))?$/.exec(line.text) ?? fail('expected "key: value"');
      const [, key = '', value] = m;
      if (key in object) fail(`duplicate key ${key}`);
      i++;
      const next = lines[i];
      if (value === '|') {
        const body: string[] = [];
        const at = next?.indent ?? 0;
        for (let l = lines[i]; l !== undefined && l.indent > indent; l = lines[++i])
          body.push(l.raw.slice(at));
        object[key] = `${body.join('\n')}\n`;
      } else if (value !== undefined) object[key] = scalar(value);
      else if (next !== undefined && next.indent > indent) object[key] = node(next.indent);
      else object[key] = '';
    }
    return object;
  };
  const root = node(0);
  if (i < lines.length) fail('unexpected indentation');
  return root;
}

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: string };
  annotations: { summary: string; description: string };
}

const rulesText = readFileSync(RULES, 'utf8');
const dashboardText = readFileSync(DASHBOARD, 'utf8');

interface Panel {
  type: string;
  id: number;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: { expr: string; refId: string }[];
}
const dashboard = JSON.parse(dashboardText) as { title: string; uid: string; panels: Panel[] };
const graphs = dashboard.panels.filter((panel) => panel.type !== 'row');
const exprs = graphs.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr));

/** The metrics an operator needs on the dashboard (issue 14, point 4). */
const DASHBOARD_METRICS = [
  'link_etcd_propagation_seconds_bucket',
  'link_etcd_changes_applied_total',
  'link_etcd_conflicts_total',
  'link_etcd_push_failures_total',
  'link_etcd_file_write_failures_total',
  'link_etcd_watch_lag_revisions',
  'link_etcd_ready',
  'link_etcd_pass_stage_seconds_bucket',
  'link_etcd_watch_divergence_total',
  'link_etcd_etcd_regressions_total',
  'link_etcd_last_full_reconcile_timestamp_seconds',
];

describe('examples/monitoring: the Grafana dashboard', () => {
  it('uses only metrics the daemon exports', async () => {
    const known = await registryNames();
    expect(known).toContain('link_etcd_propagation_seconds_bucket');
    const unknown = [...metricNames(dashboardText)].filter((name) => !known.has(name));
    expect(unknown).toEqual([]);
  });

  it('parses and has a panel for each metric an operator needs', () => {
    expect(dashboard).toMatchObject({ title: 'link-etcd', uid: 'link-etcd' });
    for (const metric of DASHBOARD_METRICS) expect(exprs.join('\n')).toContain(metric);
    expect(exprs.some((e) => /histogram_quantile\(.*by \(le, direction\)/.test(e))).toBe(true);
    expect(graphs.map((panel) => panel.title)).toEqual(
      expect.arrayContaining([
        'Ready',
        'Watch lag',
        'Propagation latency by direction',
        'Changes applied by direction',
        'Conflicts',
        'etcd push failures by reason',
        'File write failures by reason',
        'Sync pass stages (p95)',
        'Watch divergence and etcd regressions',
        'Time since the last full reconcile',
      ]),
    );
  });

  it('lays its panels out on the 24-column grid with unique ids, each with a query', () => {
    const ids = dashboard.panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of dashboard.panels) {
      expect(panel.gridPos.x + panel.gridPos.w, panel.title).toBeLessThanOrEqual(24);
      if (panel.type !== 'row') expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
    }
    const cells = new Set<string>();
    for (const { gridPos: g, title } of dashboard.panels)
      for (let x = g.x; x < g.x + g.w; x++)
        for (let y = g.y; y < g.y + g.h; y++) {
          expect(cells.has(`${x},${y}`), `${title} overlaps another panel`).toBe(false);
          cells.add(`${x},${y}`);
        }
  });
});

describe('examples/monitoring: the Prometheus alert rules', () => {
  const parsed = parseYaml(rulesText) as unknown as { groups: { name: string; rules: Rule[] }[] };
  const rules = parsed.groups.flatMap((group) => group.rules);
  const rule = (alert: string) => rules.find((r) => r.alert === alert) as Rule;

  it('use only metrics the daemon exports', async () => {
    const known = await registryNames();
    const used = new Set(rules.flatMap((r) => [...metricNames(r.expr)]));
    expect(used.size).toBeGreaterThan(5);
    expect([...used].filter((name) => !known.has(name))).toEqual([]);
    expect([...metricNames(rulesText)].filter((name) => !known.has(name))).toEqual([]);
  });

  it('parse (without promtool) into well-formed alerts', () => {
    expect(parsed.groups.map((group) => group.name)).toEqual(['link-etcd']);
    for (const r of rules) {
      expect(r.alert).toMatch(/^LinkEtcd[A-Za-z]+$/);
      expect(r.expr, r.alert).toMatch(/link_etcd_/);
      expect(['warning', 'critical'], r.alert).toContain(r.labels.severity);
      expect(r.annotations.summary, r.alert).not.toBe('');
      expect(r.annotations.description, r.alert).not.toBe('');
      if (r.for !== undefined) expect(r.for, r.alert).toMatch(/^\d+[smh]$/);
    }
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
  });

  it('cover readiness, failures, conflicts, lag, the full reconcile, divergence and regressions', () => {
    expect(rule('LinkEtcdNotReady')).toMatchObject({ expr: 'link_etcd_ready == 0', for: '5m' });
    expect(rule('LinkEtcdPushFailures').expr).toContain('increase(link_etcd_push_failures_total[');
    expect(rule('LinkEtcdFileWriteFailures').expr).toContain('increase(link_etcd_file_write_failures_total[');
    expect(rule('LinkEtcdConflicts').expr).toContain('increase(link_etcd_conflicts_total[');
    expect(rule('LinkEtcdWatchLagGrowing').expr).toContain('deriv(link_etcd_watch_lag_revisions[');
    // two periods of the default --full-reconcile 300
    expect(rule('LinkEtcdNoFullReconcile').expr).toBe(
      'time() - link_etcd_last_full_reconcile_timestamp_seconds > 2 * 300',
    );
    expect(rule('LinkEtcdWatchDivergence').expr).toContain('increase(link_etcd_watch_divergence_total[');
    expect(rule('LinkEtcdEtcdRegression').expr).toContain('increase(link_etcd_etcd_regressions_total[');
  });
});

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  return undefined;
}

const promtool = onPath('promtool');
const NO_PROMTOOL = 'skipped: promtool is not on PATH (Debian package prometheus)';
if (promtool === undefined) console.warn(`monitoring.test.ts: promtool checks ${NO_PROMTOOL}`);
const title = (what: string) => (promtool === undefined ? `${what} (${NO_PROMTOOL})` : what);

describe('examples/monitoring with promtool', () => {
  const run = (...args: string[]) => {
    const res = spawnSync(promtool as string, args, { cwd: DIR, encoding: 'utf8', timeout: 30_000 });
    return { status: res.status, output: `${res.stdout}${res.stderr}` };
  };

  it.skipIf(promtool === undefined)(title('promtool check rules accepts the alert rules'), () => {
    const res = run('check', 'rules', RULES);
    expect(res.output).toContain('SUCCESS');
    expect(res.status, res.output).toBe(0);
  });

  it.skipIf(promtool === undefined)(title('promtool test rules: each alert fires when it should'), () => {
    const res = run('test', 'rules', RULES_TEST);
    expect(res.status, res.output).toBe(0);
  });

  it.skipIf(promtool === undefined)(title("the dashboard's queries are valid PromQL"), () => {
    const dir = mkdtempSync(join(tmpdir(), 'link-etcd-dashboard-'));
    try {
      const grafana = (e: string) =>
        e
          .replaceAll('$__rate_interval', '5m')
          .replaceAll('$__range', '1h')
          .replaceAll(/\$(job|instance)\b/g, '.*');
      const records = exprs.map(
        (e, n) => `      - record: dashboard:query_${n}\n        expr: ${JSON.stringify(grafana(e))}`,
      );
      const file = join(dir, 'dashboard.rules.yml');
      writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${records.join('\n')}\n`);
      const res = run('check', 'rules', file);
      expect(res.status, res.output).toBe(0);
      expect(res.output).toContain(`SUCCESS: ${exprs.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
