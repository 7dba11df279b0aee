// The campaigns page (/campaigns) for managers and admins: campaigns with their results and
// a side-by-side comparison, e-mail setup and sending, segments with live counts, and
// bilingual e-mail templates with a preview. Everything goes through the REST API
// (docs/campaigns.md); nothing here decides anything the API does not check again.

import { ApiError } from './api.js';
import { dialog, fill, h, ltr, toast } from './dom.js';
import { formatNumber, language, setLanguage, STRINGS, t } from './i18n.js';
import {
  expire,
  initClock,
  initialLanguage,
  makeApi,
  session as getSession,
  signOut,
  switchLanguage,
} from './shell.js';

const TITLE = 'campaigns_title';

// This page's strings, added to the shared tables so t() finds them.
Object.assign(STRINGS.fa, {
  campaigns_title: 'تماس · کمپین‌ها',
  tab_campaigns: 'کمپین‌ها',
  tab_segments: 'بخش‌بندی‌ها',
  tab_templates: 'قالب‌های ایمیل',
  c_name: 'نام',
  c_channel: 'کانال',
  c_status: 'وضعیت',
  c_targeted: 'هدف',
  c_reached: 'دسترسی',
  c_responded: 'پاسخ',
  c_converted: 'تبدیل',
  c_revenue: 'درآمد',
  c_cost: 'هزینه',
  c_budget: 'بودجه',
  c_roi: 'بازگشت سرمایه',
  c_offer: 'پیشنهاد',
  c_segment: 'بخش‌بندی',
  c_compare: 'مقایسهٔ انتخاب‌شده‌ها',
  c_new: 'کمپین تازه',
  c_create: 'ساختن',
  c_email: 'ایمیل…',
  c_send: 'ارسال',
  c_sent: 'ارسال آغاز شد: {queued} نامه در صف',
  c_template: 'قالب',
  c_rate: 'نامه در دقیقه',
  c_from_name: 'نام فرستنده',
  c_messages: 'پیام‌ها',
  c_none: 'کمپینی نیست.',
  channel_call: 'تماس',
  status_draft: 'پیش‌نویس',
  status_scheduled: 'زمان‌بندی‌شده',
  status_running: 'در جریان',
  status_paused: 'متوقف',
  status_done: 'پایان‌یافته',
  channel_email: 'ایمیل',
  s_entity: 'نوع پرونده',
  s_kind: 'نوع',
  s_static: 'ثابت',
  s_dynamic: 'پویا',
  s_filter: 'فیلتر (JSON)',
  s_count: 'شمارش',
  s_members: '{count} عضو',
  s_save: 'ذخیرهٔ بخش‌بندی',
  s_none: 'بخش‌بندی‌ای نیست.',
  s_bad_json: 'JSON نامعتبر: {message}',
  t_default_lang: 'زبان پیش‌فرض',
  t_subject_fa: 'موضوع (فارسی)',
  t_subject_en: 'موضوع (انگلیسی)',
  t_html_fa: 'متن HTML (فارسی)',
  t_html_en: 'متن HTML (انگلیسی)',
  t_fields: 'فیلدهای شخصی:',
  t_fallback: 'با مقدار پیش‌فرض:',
  t_preview: 'پیش‌نمایش برای مخاطب شمارهٔ',
  t_new: 'قالب تازه',
  t_show: 'نمایش',
  t_none: 'قالبی نیست.',
});
Object.assign(STRINGS.en, {
  campaigns_title: 'Tamas · Campaigns',
  tab_campaigns: 'Campaigns',
  tab_segments: 'Segments',
  tab_templates: 'E-mail templates',
  c_name: 'Name',
  c_channel: 'Channel',
  c_status: 'Status',
  c_targeted: 'Targeted',
  c_reached: 'Reached',
  c_responded: 'Responded',
  c_converted: 'Converted',
  c_revenue: 'Revenue',
  c_cost: 'Cost',
  c_budget: 'Budget',
  c_roi: 'ROI',
  c_offer: 'Offer',
  c_segment: 'Segment',
  c_compare: 'Compare selected',
  c_new: 'New campaign',
  c_create: 'Create',
  c_email: 'E-mail…',
  c_send: 'Send',
  c_sent: 'Sending started: {queued} messages queued',
  c_template: 'Template',
  c_rate: 'Messages per minute',
  c_from_name: 'Sender name',
  c_messages: 'Messages',
  c_none: 'No campaigns yet.',
  channel_call: 'Call',
  status_draft: 'Draft',
  status_scheduled: 'Scheduled',
  status_running: 'Running',
  status_paused: 'Paused',
  status_done: 'Done',
  channel_email: 'E-mail',
  s_entity: 'Record type',
  s_kind: 'Kind',
  s_static: 'Static',
  s_dynamic: 'Dynamic',
  s_filter: 'Filter (JSON)',
  s_count: 'Count',
  s_members: '{count} members',
  s_save: 'Save segment',
  s_none: 'No segments yet.',
  s_bad_json: 'Invalid JSON: {message}',
  t_default_lang: 'Default language',
  t_subject_fa: 'Subject (Persian)',
  t_subject_en: 'Subject (English)',
  t_html_fa: 'HTML body (Persian)',
  t_html_en: 'HTML body (English)',
  t_fields: 'Personal fields:',
  t_fallback: 'with a fallback:',
  t_preview: 'Preview for contact id',
  t_new: 'New template',
  t_show: 'Show',
  t_none: 'No templates yet.',
});

const FIGURES = ['targeted', 'reached', 'responded', 'converted', 'revenue', 'cost', 'roi'];
const PLACEHOLDERS = ['first_name', 'last_name', 'full_name', 'company', 'offer', 'campaign', 'owner_name', 'custom.key'];
const EXAMPLE_FILTER = {
  all: [
    { field: 'lifecycle_stage', op: 'eq', value: 'customer' },
    { last_contact: { older_than_days: 90 } },
  ],
};

const app = { root: null, api: null, tab: 'campaigns', main: null };

function fail(err) {
  if (err instanceof ApiError && err.status === 401) return;
  toast(t('error', { message: err instanceof ApiError ? err.detail : String(err) }), 'error');
}

function field(label, input) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h('div', {}, h('label', { for: id }, label), input);
}

function num(value) {
  if (value === null || value === undefined || value === '') return t('none');
  const n = Number(value);
  return ltr(Number.isFinite(n) ? formatNumber(n) : String(value));
}

function roi(value) {
  return value === null || value === undefined ? t('none') : ltr(`${formatNumber(Math.round(value * 100))}%`);
}

// -- layout ------------------------------------------------------------------------------------

function render() {
  document.title = t(TITLE);
  const tabs = ['campaigns', 'segments', 'templates'].map((name) =>
    h(
      'button',
      {
        type: 'button',
        role: 'tab',
        'aria-selected': String(app.tab === name),
        id: `tab-${name}`,
        onclick: () => {
          app.tab = name;
          render();
        },
      },
      t(`tab_${name}`),
    ),
  );
  app.main = h('div', { id: 'tab-body', role: 'tabpanel' }, h('p', { class: 'muted' }, t('loading')));
  fill(
    app.root,
    h(
      'main',
      {},
      h(
        'header',
        { class: 'camp-top' },
        h('h1', {}, t(TITLE)),
        h('button', { type: 'button', class: 'link', onclick: toggleLanguage }, t('switch_language')),
        h('button', { type: 'button', onclick: () => signOut(app.api) }, t('logout')),
      ),
      h('nav', { class: 'camp-tabs', role: 'tablist' }, tabs),
      app.main,
    ),
  );
  ({ campaigns: showCampaigns, segments: showSegments, templates: showTemplates })[app.tab]().catch(fail);
}

async function toggleLanguage() {
  await switchLanguage(app.api);
  render();
}

// -- campaigns ---------------------------------------------------------------------------------

async function showCampaigns() {
  const [list, segs] = await Promise.all([
    app.api.get('/api/v1/campaigns?limit=200&sort=-id'),
    app.api.get('/api/v1/segments?limit=200').catch(() => ({ items: [] })),
  ]);
  const results = await Promise.all(
    list.items.map((c) => app.api.get(`/api/v1/campaigns/${c.id}/results`).catch(() => null)),
  );
  const selected = new Set();
  const compareOut = h('div', { id: 'compare-out' });
  const rows = list.items.map((c, i) => {
    const r = results[i] || {};
    return h(
      'tr',
      { dataset: { id: c.id } },
      h('td', {}, h('input', {
        type: 'checkbox',
        'aria-label': c.name,
        onchange: (e) => (e.target.checked ? selected.add(c.id) : selected.delete(c.id)),
      })),
      h('td', {}, c.name),
      h('td', {}, t(`channel_${c.channel}`)),
      h('td', {}, t(`status_${c.status}`)),
      ...['targeted', 'reached', 'responded', 'converted', 'revenue'].map((k) => h('td', { class: 'n' }, num(r[k]))),
      h('td', { class: 'n' }, roi(r.roi)),
      h(
        'td',
        {},
        c.channel === 'email'
          ? h('button', { type: 'button', onclick: () => emailDialog(c).catch(fail) }, t('c_email'))
          : null,
      ),
    );
  });
  const table = list.items.length
    ? h(
        'table',
        { class: 'grid', id: 'campaign-table' },
        h('thead', {}, h('tr', {}, h('th', {}, ''), ...['c_name', 'c_channel', 'c_status'].map((k) => h('th', {}, t(k))),
          ...['c_targeted', 'c_reached', 'c_responded', 'c_converted', 'c_revenue', 'c_roi'].map((k) => h('th', { class: 'n' }, t(k))),
          h('th', {}, ''))),
        h('tbody', {}, rows),
      )
    : h('p', { class: 'muted' }, t('c_none'));
  const compareBtn = h('button', {
    type: 'button',
    id: 'compare',
    onclick: async () => {
      if (!selected.size) return;
      try {
        const out = await app.api.get(`/api/v1/campaigns/compare?ids=${[...selected].join(',')}`);
        fill(compareOut, comparisonTable(out));
      } catch (err) {
        fail(err);
      }
    },
  }, t('c_compare'));
  fill(
    app.main,
    h('section', { class: 'card' }, h('h2', {}, t('tab_campaigns')), table, h('div', { class: 'buttons' }, compareBtn), compareOut),
    newCampaignForm(segs.items),
  );
}

function comparisonTable(out) {
  const items = out.items;
  return h(
    'table',
    { class: 'grid', id: 'comparison' },
    h('thead', {}, h('tr', {}, h('th', {}, ''), ...items.map((c) => h('th', { class: 'n' }, c.name)))),
    h(
      'tbody',
      {},
      FIGURES.map((key) =>
        h(
          'tr',
          {},
          h('th', {}, t(`c_${key}`)),
          ...items.map((c) =>
            h('td', { class: ['n', out.best[key] === c.campaign_id && 'best'] }, key === 'roi' ? roi(c.roi) : num(c[key])),
          ),
        ),
      ),
    ),
  );
}

function newCampaignForm(segments) {
  const name = h('input', { required: true, maxlength: 200 });
  const channel = h('select', {}, h('option', { value: 'email' }, t('channel_email')), h('option', { value: 'call' }, t('channel_call')));
  const segment = h('select', {}, h('option', { value: '' }, t('none')), segments.map((s) => h('option', { value: s.id }, s.name)));
  const cost = h('input', { type: 'number', min: 0, value: 0 });
  const budget = h('input', { type: 'number', min: 0, value: 0 });
  const offer = h('textarea', { rows: 2 });
  return h(
    'form',
    {
      class: 'card',
      id: 'new-campaign',
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await app.api.post('/api/v1/campaigns', {
            name: name.value.trim(),
            channel: channel.value,
            segment_id: segment.value ? Number(segment.value) : null,
            cost: cost.value || '0',
            budget: budget.value || '0',
            offer: offer.value.trim() || null,
          });
          toast(t('saved'));
          render();
        } catch (err) {
          fail(err);
        }
      },
    },
    h('h2', {}, t('c_new')),
    h('div', { class: 'row' }, field(t('c_name'), name), field(t('c_channel'), channel), field(t('c_segment'), segment)),
    h('div', { class: 'row' }, field(t('c_cost'), cost), field(t('c_budget'), budget)),
    field(t('c_offer'), offer),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, t('c_create'))),
  );
}

async function emailDialog(campaign) {
  const [setup, templates] = await Promise.all([
    app.api.get(`/api/v1/campaigns/${campaign.id}/email`),
    app.api.get('/api/v1/email-templates'),
  ]);
  const current = setup.setup || {};
  const template = h('select', { id: 'email-template' }, templates.items.map((tp) =>
    h('option', { value: tp.id, selected: tp.id === current.template_id }, tp.name)));
  const rate = h('input', { type: 'number', min: 1, value: current.rate_per_minute || 60 });
  const fromName = h('input', { value: current.from_name || '' });
  const counts = Object.entries(setup.messages).map(([k, v]) => `${k}: ${formatNumber(v)}`).join(' · ');
  const body = h(
    'form',
    {
      class: 'stack',
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await app.api.request('PUT', `/api/v1/campaigns/${campaign.id}/email`, {
            template_id: Number(template.value),
            rate_per_minute: Number(rate.value),
            from_name: fromName.value.trim() || null,
          });
          const report = await app.api.post(`/api/v1/campaigns/${campaign.id}/send`);
          toast(t('c_sent', { queued: report.queued }));
          dlg.close();
          render();
        } catch (err) {
          fail(err);
        }
      },
    },
    field(t('c_template'), template),
    field(t('c_rate'), rate),
    field(t('c_from_name'), fromName),
    h('p', { class: 'muted' }, `${t('c_messages')}: `, ltr(counts || '0', 'num')),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', id: 'send-campaign' }, t('c_send'))),
  );
  const dlg = dialog(`${t('c_email')} ${campaign.name}`, body, { id: 'email-dialog' });
}

// -- segments ----------------------------------------------------------------------------------

async function showSegments() {
  const list = await app.api.get('/api/v1/segments?limit=200');
  const counts = await Promise.all(
    list.items.map((s) => app.api.get(`/api/v1/segments/${s.id}/count`).catch(() => ({ count: null }))),
  );
  const table = list.items.length
    ? h(
        'table',
        { class: 'grid', id: 'segment-table' },
        h('thead', {}, h('tr', {}, h('th', {}, t('c_name')), h('th', {}, t('s_entity')), h('th', {}, t('s_kind')), h('th', { class: 'n' }, t('s_count')))),
        h('tbody', {}, list.items.map((s, i) => h('tr', {},
          h('td', {}, s.name), h('td', {}, s.entity_type), h('td', {}, t(`s_${s.kind}`)),
          h('td', { class: 'n' }, num(counts[i].count))))),
      )
    : h('p', { class: 'muted' }, t('s_none'));
  fill(app.main, h('div', { class: 'two' }, h('section', { class: 'card' }, h('h2', {}, t('tab_segments')), table), segmentEditor()));
}

function segmentEditor() {
  const name = h('input', { maxlength: 128 });
  const entity = h('select', {}, ['contact', 'lead', 'account'].map((e) => h('option', { value: e }, e)));
  const kind = h('select', {}, h('option', { value: 'dynamic' }, t('s_dynamic')), h('option', { value: 'static' }, t('s_static')));
  const filter = h('textarea', { class: 'filter-json', id: 'segment-filter', dir: 'ltr', spellcheck: 'false' });
  filter.value = JSON.stringify(EXAMPLE_FILTER, null, 2);
  const out = h('div', { id: 'segment-count', 'aria-live': 'polite' });

  function parsed() {
    try {
      return JSON.parse(filter.value || '{}');
    } catch (err) {
      fill(out, h('p', { class: 'error' }, t('s_bad_json', { message: err.message })));
      return null;
    }
  }

  function showErrors(err) {
    if (err instanceof ApiError && err.data.errors) {
      // The API's reasons are English: a left-to-right list, whatever the page direction.
      fill(out, h('ul', { class: 'errors', dir: 'ltr' }, err.data.errors.map((e) => h('li', {}, `${e.field}: ${e.reason}`))));
    } else fail(err);
  }

  async function count() {
    const f = parsed();
    if (!f) return;
    try {
      const res = await app.api.post('/api/v1/segments/preview', { entity_type: entity.value, filter: f, limit: 10 });
      fill(
        out,
        h('p', { class: 'count-badge' }, t('s_members', { count: res.count })),
        h('ul', {}, res.items.map((r) => h('li', {}, r.name || r.full_name || `#${r.id}`))),
      );
    } catch (err) {
      showErrors(err);
    }
  }

  return h(
    'form',
    {
      class: 'card stack',
      id: 'segment-editor',
      onsubmit: async (e) => {
        e.preventDefault();
        const f = parsed();
        if (!f) return;
        try {
          await app.api.post('/api/v1/segments', { name: name.value.trim(), entity_type: entity.value, kind: kind.value, filter: f });
          toast(t('saved'));
          render();
        } catch (err) {
          showErrors(err);
        }
      },
    },
    field(t('c_name'), name),
    h('div', { class: 'row' }, field(t('s_entity'), entity), field(t('s_kind'), kind)),
    field(t('s_filter'), filter),
    h('div', { class: 'buttons' },
      h('button', { type: 'button', id: 'segment-count-btn', onclick: count }, t('s_count')),
      h('button', { type: 'submit', class: 'primary' }, t('s_save'))),
    out,
  );
}

// -- templates ---------------------------------------------------------------------------------

async function showTemplates() {
  const list = await app.api.get('/api/v1/email-templates');
  const editorBox = h('div', {});
  const open = (tpl) => fill(editorBox, templateEditor(tpl));
  const items = list.items.length
    ? h('ul', { id: 'template-list' }, list.items.map((tp) => h('li', {}, h('button', { type: 'button', class: 'link', onclick: () => open(tp) }, tp.name))))
    : h('p', { class: 'muted' }, t('t_none'));
  fill(
    app.main,
    h('section', { class: 'card' }, h('h2', {}, t('tab_templates')), items,
      h('div', { class: 'buttons' }, h('button', { type: 'button', onclick: () => open(null) }, t('t_new')))),
    editorBox,
  );
  open(list.items[0] || null);
}

function templateEditor(tpl) {
  const v = tpl || { name: '', default_language: 'fa', subject_fa: '', subject_en: '', html_fa: '', html_en: '' };
  const name = h('input', { value: v.name, maxlength: 128 });
  const lang = h('select', {}, h('option', { value: 'fa', selected: v.default_language === 'fa' }, 'فارسی'),
    h('option', { value: 'en', selected: v.default_language === 'en' }, 'English'));
  const subjectFa = h('input', { value: v.subject_fa, dir: 'rtl', lang: 'fa' });
  const subjectEn = h('input', { value: v.subject_en, dir: 'ltr', lang: 'en' });
  // HTML source reads left to right whatever the language of its text.
  const htmlFa = h('textarea', { class: 'html-src', dir: 'ltr', lang: 'fa' });
  htmlFa.value = v.html_fa;
  const htmlEn = h('textarea', { class: 'html-src', dir: 'ltr', lang: 'en' });
  htmlEn.value = v.html_en;
  const contact = h('input', { type: 'number', min: 1, id: 'preview-contact' });
  const previewOut = h('div', { id: 'template-preview' });
  const errors = h('div', {});

  async function preview() {
    if (!tpl || !contact.value) return;
    try {
      const out = await app.api.post(`/api/v1/email-templates/${tpl.id}/preview`, { entity_type: 'contact', entity_id: Number(contact.value) });
      // A sandboxed frame: the message's HTML cannot run scripts or touch this page.
      const frame = h('iframe', { class: 'preview-frame', sandbox: '', title: out.subject });
      frame.srcdoc = out.html;
      fill(previewOut, h('p', { dir: out.language === 'fa' ? 'rtl' : 'ltr' }, h('strong', {}, out.subject)), frame);
    } catch (err) {
      fail(err);
    }
  }

  return h(
    'form',
    {
      class: 'card stack',
      id: 'template-editor',
      onsubmit: async (e) => {
        e.preventDefault();
        const body = {
          name: name.value.trim(),
          default_language: lang.value,
          subject_fa: subjectFa.value,
          subject_en: subjectEn.value,
          html_fa: htmlFa.value,
          html_en: htmlEn.value,
        };
        try {
          if (tpl) await app.api.patch(`/api/v1/email-templates/${tpl.id}`, body);
          else await app.api.post('/api/v1/email-templates', body);
          toast(t('saved'));
          render();
        } catch (err) {
          if (err instanceof ApiError && err.data.errors) {
            fill(errors, h('ul', { class: 'errors', dir: 'ltr' }, err.data.errors.map((x) => h('li', {}, `${x.field}: ${x.reason}`))));
          } else fail(err);
        }
      },
    },
    h(
      'p',
      { class: 'muted' },
      t('t_fields'),
      ' ',
      PLACEHOLDERS.map((name) => [ltr(`{{${name}}}`, 'code'), ' ']),
      t('t_fallback'),
      ' ',
      ltr(language() === 'fa' ? '{{first_name|دوست عزیز}}' : '{{first_name|Friend}}', 'code'),
    ),
    h('div', { class: 'row' }, field(t('c_name'), name), field(t('t_default_lang'), lang)),
    h('div', { class: 'two' },
      h('div', {}, field(t('t_subject_fa'), subjectFa), field(t('t_html_fa'), htmlFa)),
      h('div', {}, field(t('t_subject_en'), subjectEn), field(t('t_html_en'), htmlEn))),
    errors,
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, t('save'))),
    tpl
      ? h('div', { class: 'row' }, field(t('t_preview'), contact),
          h('div', {}, h('button', { type: 'button', id: 'preview-btn', onclick: preview }, t('t_show'))))
      : null,
    previewOut,
  );
}

// -- start -------------------------------------------------------------------------------------

async function main() {
  app.root = document.getElementById('root');
  initClock();
  initialLanguage();
  const session = await getSession(app.root, TITLE);
  setLanguage(session.user.language || language());
  app.api = makeApi(() => expire('session_expired'));
  render();
}

main().catch(fail);
