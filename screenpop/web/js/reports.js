// The reports page (/reports): agent, queue, pipeline, campaign and adoption figures with
// filters (a period in Jalali or Gregorian, team, queue, agent, campaign, pipeline), SVG
// charts (charts.js) and a table, and the CSV download. What the user may see is decided by
// the gateway: agents get their own figures, supervisors their teams', admins everything.

import { ApiError, q } from './api.js';
import { columnChart } from './charts.js';
import { fill, h, toast } from './dom.js';
import {
  formatDate,
  formatDuration,
  formatNumber,
  language,
  latinDigits,
  localDigits,
  setLanguage,
  setTimeZone,
  STRINGS,
  t,
} from './i18n.js';
import {
  expire,
  initClock,
  initialLanguage,
  makeApi,
  rememberLanguage,
  session as getSession,
  signOut,
  switchLanguage,
} from './shell.js';

Object.assign(STRINGS.fa, {
  reports_title: 'تماس · گزارش‌ها',
  reports: 'گزارش‌ها',
  report_kind: 'گزارش',
  period_from: 'از تاریخ',
  period_to: 'تا تاریخ',
  date_hint: 'شمسی (۱۴۰۳-۰۱-۰۱) یا میلادی (2024-03-20)',
  interval: 'بازه',
  interval_hour: 'ساعتی',
  interval_day: 'روزانه',
  interval_week: 'هفتگی',
  team: 'تیم',
  all: 'همه',
  campaign: 'کمپین',
  pipeline: 'قیف فروش',
  show_report: 'نمایش',
  download_csv: 'دریافت CSV',
  totals: 'جمع',
  no_rows: 'در این بازه داده‌ای نیست.',
  chart_calls: 'تماس‌ها به تفکیک کارشناس',
  chart_times: 'میانگین زمان‌ها (ثانیه)',
  chart_queue: 'تماس‌های صف در هر بازه',
  chart_pipeline: 'ارزش معامله‌های باز به تفکیک مرحله',
  chart_campaign: 'نتیجه کمپین‌ها',
  chart_adoption: 'استفاده از سامانه به تفکیک کاربر',
  forecast: 'پیش‌بینی فروش بازه',
  win_rate: 'نرخ موفقیت',
  won: 'موفق',
  lost: 'ازدست‌رفته',
  desktop_link: 'میز کار',
  wallboard_link: 'تابلوی سرپرست',
});
Object.assign(STRINGS.en, {
  reports_title: 'Tamas · Reports',
  reports: 'Reports',
  report_kind: 'Report',
  period_from: 'From',
  period_to: 'To',
  date_hint: 'Jalali (1403-01-01) or Gregorian (2024-03-20)',
  interval: 'Interval',
  interval_hour: 'Hourly',
  interval_day: 'Daily',
  interval_week: 'Weekly',
  team: 'Team',
  all: 'All',
  campaign: 'Campaign',
  pipeline: 'Pipeline',
  show_report: 'Show',
  download_csv: 'Download CSV',
  totals: 'Total',
  no_rows: 'No data in this period.',
  chart_calls: 'Calls per agent',
  chart_times: 'Average times (seconds)',
  chart_queue: 'Queue calls per interval',
  chart_pipeline: 'Open deal value by stage',
  chart_campaign: 'Campaign results',
  chart_adoption: 'CRM use per user',
  forecast: 'Forecast for the period',
  win_rate: 'Win rate',
  won: 'Won',
  lost: 'Lost',
  desktop_link: 'Desktop',
  wallboard_link: 'Wallboard',
});

const TITLE = 'reports_title';
const FILTERS = {
  agent: ['team_id', 'agent_id', 'queue', 'campaign_id'],
  queue: ['interval', 'team_id', 'queue', 'agent_id', 'campaign_id'],
  pipeline: ['team_id', 'agent_id', 'pipeline_id', 'campaign_id'],
  campaign: ['team_id', 'campaign_id'],
  adoption: ['team_id', 'agent_id', 'campaign_id'],
};

const app = { root: null, api: null, options: null, user: null, kind: 'agent', params: {}, report: null, els: {} };

async function main() {
  app.root = document.getElementById('root');
  initClock();
  initialLanguage();
  const session = await getSession(app.root, TITLE);
  app.user = session.user;
  setLanguage(session.user.language || language());
  app.api = makeApi(() => expire('session_expired'));
  try {
    const config = await app.api.get('/api/v1/desktop/config');
    setTimeZone(config.timezone);
    if (config.user) {
      app.user = config.user;
      rememberLanguage(app.user.language || language());
    }
    app.options = await app.api.get('/api/v1/reports');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    fill(app.root, h('p', { class: 'error' }, t('error', { message: err.detail || err.message })));
    return;
  }
  readHash();
  if (!app.params.from) setDefaultPeriod();
  renderPage();
  window.addEventListener('hashchange', () => {
    readHash();
    renderPage();
  });
}

// -- the period and the URL -------------------------------------------------------------------

/** ISO Gregorian day -> Jalali YYYY-MM-DD (Latin digits), with the browser's Intl. */
export function toJalali(iso) {
  const d = new Date(`${iso}T12:00:00Z`);
  const parts = new Intl.DateTimeFormat('en-US-u-ca-persian-nu-latn', {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    timeZone: 'UTC',
  }).formatToParts(d);
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get('year').replace(/\D/g, '')}-${get('month')}-${get('day')}`;
}

function addDays(iso, n) {
  const d = new Date(`${iso}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

function setDefaultPeriod() {
  const today = app.options.today;
  const from = addDays(today, -6);
  const jalali = language() === 'fa';
  app.params.from = jalali ? toJalali(from) : from;
  app.params.to = jalali ? toJalali(today) : today;
}

function readHash() {
  const [kind, query] = window.location.hash.replace(/^#\/?/, '').split('?');
  app.kind = FILTERS[kind] ? kind : app.kind;
  const params = {};
  for (const [k, v] of new URLSearchParams(query || '')) params[k] = v;
  if (Object.keys(params).length) app.params = params;
}

function queryString(extra = {}) {
  const all = { ...app.params, ...extra, lang: language() };
  const keep = new Set(['from', 'to', 'lang', 'format', ...FILTERS[app.kind]]);
  return Object.entries(all)
    .filter(([k, v]) => keep.has(k) && v !== '' && v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${q(latinDigits(v))}`)
    .join('&');
}

// -- the page -----------------------------------------------------------------------------

function renderPage() {
  document.title = t(TITLE);
  const header = h(
    'header',
    { class: 'topbar' },
    h('a', { class: 'brand', href: '/reports' }, t(TITLE)),
    h('nav', { class: 'links' }, h('a', { href: '/app' }, t('desktop_link')), ' ', h('a', { href: '/wallboard' }, t('wallboard_link'))),
    h('span', { class: 'spacer' }),
    h('button', { type: 'button', id: 'lang-toggle', lang: language() === 'fa' ? 'en' : 'fa', onclick: toggleLanguage }, t('switch_language')),
    h('span', { class: 'who' }, app.user.full_name || app.user.username),
    h('button', { type: 'button', onclick: () => signOut(app.api) }, t('logout')),
  );
  const tabs = h(
    'nav',
    { class: 'report-tabs', 'aria-label': t('report_kind') },
    app.options.kinds.map((k) =>
      h(
        'a',
        {
          href: `#/${k.kind}`,
          class: ['tab', k.kind === app.kind ? 'active' : null],
          'aria-current': k.kind === app.kind ? 'page' : null,
          dataset: { kind: k.kind },
        },
        k.title[language()] || k.title.en,
      ),
    ),
  );
  const result = h('section', { id: 'report', class: 'report', 'aria-live': 'polite' });
  fill(app.root, header, h('main', { class: 'reports-main' }, tabs, renderFilters(), result));
  app.els = { result };
  load();
}

function select(name, label, options, value) {
  const el = h(
    'select',
    { id: `f-${name}`, name, onchange: (e) => { app.params[name] = e.target.value; } },
    options.map(([v, text]) => h('option', { value: String(v) }, text)),
  );
  el.value = value ?? '';
  return h('div', { class: 'field' }, h('label', { for: `f-${name}` }, label), el);
}

function renderFilters() {
  const o = app.options;
  const p = app.params;
  const date = (name, label) =>
    h(
      'div',
      { class: 'field' },
      h('label', { for: `f-${name}` }, label),
      h('input', {
        id: `f-${name}`,
        name,
        dir: 'ltr',
        inputmode: 'numeric',
        value: language() === 'fa' ? localDigits(p[name] || '') : p[name] || '',
        placeholder: t('date_hint'),
        title: t('date_hint'),
        oninput: (e) => { p[name] = latinDigits(e.target.value.trim()); },
      }),
    );
  const all = ['', t('all')];
  const fields = {
    interval: () => select('interval', t('interval'), ['hour', 'day', 'week'].map((i) => [i, t(`interval_${i}`)]), p.interval || 'day'),
    team_id: () => select('team_id', t('team'), [all, ...o.teams.map((x) => [x.id, x.name])], p.team_id),
    queue: () => select('queue', t('queue'), [all, ...o.queues.map((x) => [x, x])], p.queue),
    agent_id: () => select('agent_id', t('agent'), [all, ...o.agents.map((x) => [x.id, x.name])], p.agent_id),
    campaign_id: () => select('campaign_id', t('campaign'), [all, ...o.campaigns.map((x) => [x.id, x.name])], p.campaign_id),
    pipeline_id: () => select('pipeline_id', t('pipeline'), [all, ...o.pipelines.map((x) => [x.id, x.name])], p.pipeline_id),
  };
  return h(
    'form',
    {
      class: 'card filters',
      id: 'report-filters',
      onsubmit: (e) => {
        e.preventDefault();
        const hash = `#/${app.kind}?${queryString()}`;
        if (window.location.hash === hash) load();
        else window.location.hash = hash; // hashchange renders and loads
      },
    },
    date('from', t('period_from')),
    date('to', t('period_to')),
    FILTERS[app.kind].map((f) => fields[f]()),
    h(
      'div',
      { class: 'buttons' },
      h('button', { type: 'submit', class: 'primary', id: 'show-report' }, t('show_report')),
      h('button', { type: 'button', id: 'download-csv', onclick: downloadCsv }, t('download_csv')),
    ),
  );
}

async function load() {
  const el = app.els.result;
  fill(el, h('p', { class: 'muted' }, t('loading')));
  try {
    app.report = await app.api.get(`/api/v1/reports/${app.kind}?${queryString()}`);
  } catch (err) {
    fill(el, h('p', { class: 'error', role: 'alert' }, t('error', { message: err.detail || err.message })));
    return;
  }
  renderReport(app.report);
}

async function downloadCsv() {
  try {
    const resp = await fetch(`/api/v1/reports/${app.kind}?${queryString({ format: 'csv' })}`, {
      headers: { Authorization: `Bearer ${app.api.token}` },
    });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const blob = await resp.blob();
    const name = (resp.headers.get('Content-Disposition') || '').match(/filename="([^"]+)"/);
    const a = h('a', { href: URL.createObjectURL(blob), download: name ? name[1] : `${app.kind}.csv` });
    document.body.append(a);
    a.click();
    setTimeout(() => {
      URL.revokeObjectURL(a.href);
      a.remove();
    }, 1000);
  } catch (err) {
    toast(t('error', { message: err.message }), 'error');
  }
}

async function toggleLanguage() {
  await switchLanguage(app.api);
  app.user.language = language();
  renderPage();
}

// -- rendering a report -----------------------------------------------------------------------

function cell(value, kind) {
  if (value === null || value === undefined || value === '') return t('none');
  switch (kind) {
    case 'seconds':
      return formatDuration(Number(value));
    case 'pct':
      return `${formatNumber(Number(value), { maximumFractionDigits: 1 })}${language() === 'fa' ? '٪' : '%'}`;
    case 'money':
      return formatNumber(Number(value), { maximumFractionDigits: 0 });
    case 'float':
    case 'int':
      return formatNumber(Number(value), { maximumFractionDigits: 2 });
    case 'datetime':
      return formatDate(value);
    default:
      return typeof value === 'object' ? JSON.stringify(value) : localDigits(String(value));
  }
}

function table(rep, columns, rows, totals) {
  if (!rows.length) return h('p', { class: 'muted', id: 'no-rows' }, t('no_rows'));
  const isNum = (c) => !['text', 'datetime'].includes(c.kind);
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'grid report-table', id: 'report-table' },
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: isNum(c) ? 'n' : null }, c.label)))),
      h(
        'tbody',
        {},
        rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: isNum(c) ? 'n' : null, dataset: { key: c.key } }, cell(r[c.key], c.kind))))),
      ),
      totals
        ? h(
            'tfoot',
            {},
            h(
              'tr',
              {},
              columns.map((c, i) =>
                h('td', { class: isNum(c) ? 'n' : null, dataset: { key: c.key } }, i === 0 ? t('totals') : cell(totals[c.key], c.kind)),
              ),
            ),
          )
        : null,
    ),
  );
}

function label(rep, key) {
  const c = rep.columns.find((x) => x.key === key);
  return c ? c.label : key;
}

const num = (v) => formatNumber(v, { maximumFractionDigits: 1 });
const compact = (v) => formatNumber(v, { notation: 'compact', maximumFractionDigits: 1 });
const pctFmt = (v) => `${formatNumber(v, { maximumFractionDigits: 0 })}${language() === 'fa' ? '٪' : '%'}`;

function charts(rep) {
  const rtl = language() === 'fa';
  const rows = rep.rows;
  switch (rep.kind) {
    case 'agent': {
      if (!rows.length) return [];
      const names = rows.map((r) => r.agent);
      return [
        columnChart({
          id: 'chart-agent-calls',
          title: t('chart_calls'),
          categories: names,
          series: ['calls', 'handled', 'conversions'].map((k) => ({ name: label(rep, k), values: rows.map((r) => r[k]) })),
          format: num,
          rtl,
          labelFormat: localDigits,
          tickFormat: compact,
        }),
        columnChart({
          id: 'chart-agent-times',
          title: t('chart_times'),
          categories: names,
          series: ['avg_talk_s', 'avg_wait_s', 'avg_wrapup_s'].map((k) => ({ name: label(rep, k), values: rows.map((r) => r[k] || 0) })),
          format: num,
          rtl,
          labelFormat: localDigits,
          tickFormat: compact,
        }),
      ];
    }
    case 'queue':
      return [
        columnChart({
          id: 'chart-queue',
          title: t('chart_queue'),
          categories: rep.series.map((s) => s.period),
          series: ['answered', 'abandoned', 'missed'].map((k) => ({ name: label(rep, k), values: rep.series.map((s) => s[k]) })),
          stacked: true,
          line: { name: label(rep, 'service_level_pct'), values: rep.series.map((s) => s.service_level_pct), max: 100 },
          format: num,
          lineFormat: pctFmt,
          rtl,
          labelFormat: localDigits,
          tickFormat: compact,
        }),
      ];
    case 'pipeline': {
      const cur = rows.length ? rows[0].currency : null;
      const mine = rows.filter((r) => r.currency === cur);
      if (!mine.length) return [];
      return [
        columnChart({
          id: 'chart-pipeline',
          title: `${t('chart_pipeline')} (${cur})`,
          categories: mine.map((r) => r.stage),
          series: ['open_value', 'weighted_value'].map((k) => ({ name: label(rep, k), values: mine.map((r) => Number(r[k])) })),
          format: num,
          rtl,
          labelFormat: localDigits,
          tickFormat: compact,
        }),
      ];
    }
    case 'campaign':
      if (!rows.length) return [];
      return [
        columnChart({
          id: 'chart-campaign',
          title: t('chart_campaign'),
          categories: rows.map((r) => r.name),
          series: ['targeted', 'reached', 'responded', 'converted'].map((k) => ({ name: label(rep, k), values: rows.map((r) => r[k]) })),
          format: num,
          rtl,
          labelFormat: localDigits,
          tickFormat: compact,
        }),
      ];
    case 'adoption':
      if (!rows.length) return [];
      return [
        columnChart({
          id: 'chart-adoption',
          title: t('chart_adoption'),
          categories: rows.map((r) => r.user),
          series: ['logins', 'activities_created', 'records_updated', 'lost_without_reason'].map((k) => ({
            name: label(rep, k),
            values: rows.map((r) => r[k]),
          })),
          format: num,
          rtl,
          labelFormat: localDigits,
          tickFormat: compact,
        }),
      ];
    default:
      return [];
  }
}

function summary(rep) {
  if (rep.kind !== 'pipeline') return null;
  const s = rep.summary;
  const money = (m) => Object.entries(m || {}).map(([cur, v]) => `${formatNumber(Number(v), { maximumFractionDigits: 0 })} ${cur}`).join('، ') || t('none');
  const won = Object.fromEntries(Object.entries(s.closed || {}).map(([cur, c]) => [cur, c.won_value]));
  return h(
    'dl',
    { class: 'summary-tiles', id: 'pipeline-summary' },
    h('div', { class: 'stat' }, h('dt', {}, t('forecast')), h('dd', {}, money(s.forecast))),
    h('div', { class: 'stat' }, h('dt', {}, t('win_rate')), h('dd', {}, s.win_rate_pct === null ? t('none') : pctFmt(s.win_rate_pct))),
    h('div', { class: 'stat' }, h('dt', {}, t('won')), h('dd', {}, `${formatNumber(s.won_count)} | ${money(won)}`)),
    h('div', { class: 'stat' }, h('dt', {}, t('lost')), h('dd', {}, formatNumber(s.lost_count))),
  );
}

function renderReport(rep) {
  const f = rep.filters;
  const fa = language() === 'fa';
  // Each date is its own left-to-right island, so "from — to" reads in the page's direction.
  const day = (d) => h('bdi', { class: 'num', dir: 'ltr' }, localDigits(fa ? d.replaceAll('-', '/') : d));
  fill(
    app.els.result,
    h(
      'h2',
      { id: 'report-title' },
      rep.title,
      ' ',
      h('span', { class: 'muted period' }, day(fa ? f.from_jalali : f.from), ' — ', day(fa ? f.to_jalali : f.to)),
    ),
    summary(rep),
    h('div', { class: 'charts', id: 'charts' }, charts(rep)),
    table(rep, rep.columns, rep.rows, rep.totals),
  );
}

main();
