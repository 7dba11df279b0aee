// Outbound campaigns and reminders on the agent desktop (docs/dialer.md, docs/automation.md).
//
// A panel of its own (outside the desktop's re-rendered root) with:
// * the campaign card of each customer the dialer gave this agent: in preview mode the
//   customer's card with Dial / Skip; while the call is placed, the campaign and its script;
//   after an answered call, the campaign's own disposition codes, a note and, for a
//   callback, when and for whom; after a busy / unanswered call, when the next attempt is;
// * reminders of tasks and meetings pushed by the hub (type "reminder"), also as a toast and,
//   in a background tab, a desktop notification.
// Everything arrives over the websocket (dialer.preview, dialer.call, dialer.result,
// dialer.released, reminder); actions go through the REST API. On (re)connect the panel
// reloads what is open from /api/v1/dialer/me and /api/v1/automation/reminders.

import { ApiError } from './api.js';
import { fill, h, toast } from './dom.js';
import { formatDate, formatPhone, language, localDigits, sep } from './i18n.js';

const STRINGS = {
  fa: {
    panel: 'کارزار و یادآوری‌ها',
    campaign: 'کارزار',
    attempt: 'تلاش {n} از {max}',
    local_time: 'ساعت محلی مشتری: {time}',
    best_time: 'بهترین زمان تماس: {time}',
    callback_badge: 'تماس مجدد',
    dial: 'تماس',
    skip: 'رد کردن',
    calling: 'در حال برقراری تماس…',
    disposition: 'نتیجه تماس',
    choose: 'انتخاب کنید',
    note: 'یادداشت',
    callback_at: 'زمان تماس مجدد',
    callback_for: 'تماس مجدد توسط',
    callback_me: 'خودم',
    callback_anyone: 'هر کارشناس کارزار',
    save: 'ثبت نتیجه',
    saved: 'نتیجه ثبت شد',
    dismiss: 'بستن',
    result_busy: 'مشترک مشغول بود',
    result_no_answer: 'پاسخ نداد',
    result_failed: 'تماس برقرار نشد',
    result_agent_no_answer: 'تلفن شما پاسخ نداد',
    next_attempt: 'تلاش بعدی: {when}',
    no_more: 'تلاش‌ها به پایان رسید',
    released: 'این مشتری به فهرست برگشت',
    reminders: 'یادآوری‌ها',
    reminder_task: 'کار: {subject}',
    reminder_meeting: 'جلسه: {subject}',
    reminder_in: '{minutes} دقیقه دیگر',
    reminder_overdue: '{minutes} دقیقه گذشته',
    reminder_now: 'همین حالا',
    open_record: 'باز کردن پرونده',
    error: 'خطا: {message}',
  },
  en: {
    panel: 'Campaign and reminders',
    campaign: 'Campaign',
    attempt: 'attempt {n} of {max}',
    local_time: "customer's local time: {time}",
    best_time: 'best time to call: {time}',
    callback_badge: 'call back',
    dial: 'Dial',
    skip: 'Skip',
    calling: 'Calling…',
    disposition: 'Outcome',
    choose: 'Choose',
    note: 'Note',
    callback_at: 'Call back at',
    callback_for: 'Call back by',
    callback_me: 'me',
    callback_anyone: 'anyone on the campaign',
    save: 'Save outcome',
    saved: 'Outcome saved',
    dismiss: 'Dismiss',
    result_busy: 'The line was busy',
    result_no_answer: 'No answer',
    result_failed: 'The call failed',
    result_agent_no_answer: 'Your phone did not answer',
    next_attempt: 'next attempt: {when}',
    no_more: 'no attempts left',
    released: 'This customer went back to the list',
    reminders: 'Reminders',
    reminder_task: 'Task: {subject}',
    reminder_meeting: 'Meeting: {subject}',
    reminder_in: 'in {minutes} min',
    reminder_overdue: '{minutes} min ago',
    reminder_now: 'now',
    open_record: 'Open the record',
    error: 'Error: {message}',
  },
};

function s(key, vars = {}) {
  const table = STRINGS[language()] || STRINGS.en;
  const text = table[key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (vars[name] === undefined ? '' : String(vars[name])));
}

function label(item) {
  return item[language()] || item.en || item.code;
}

function localInput(date) {
  const pad = (x) => String(x).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

export class DialerPanel {
  constructor(api) {
    this.api = api;
    this.cards = new Map(); // entry id -> card
    this.reminders = new Map(); // reminder id -> reminder
    this.el = h('aside', { id: 'dialer-panel', class: 'dialer-panel', 'aria-live': 'polite' });
    this.el.hidden = true;
    document.body.append(this.el);
  }

  async reload() {
    try {
      const mine = await this.api.get('/api/v1/dialer/me');
      const fresh = new Map();
      for (const card of mine.items || []) {
        const old = this.cards.get(card.entry_id);
        fresh.set(card.entry_id, { ...card, phase: phaseOf(card.state), draft: old ? old.draft : newDraft() });
      }
      this.cards = fresh;
      const reminders = await this.api.get('/api/v1/automation/reminders');
      this.reminders = new Map((reminders.items || []).map((r) => [r.reminder_id, r]));
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) console.warn('dialer panel reload', err);
    }
    this.render();
  }

  onEvent(ev) {
    switch (ev.type) {
      case 'dialer.preview':
      case 'dialer.call': {
        const old = this.cards.get(ev.entry_id);
        this.cards.set(ev.entry_id, {
          ...(old || {}),
          ...ev,
          phase: ev.type === 'dialer.preview' ? 'preview' : 'calling',
          draft: old ? old.draft : newDraft(),
        });
        break;
      }
      case 'dialer.result': {
        const card = this.cards.get(ev.entry_id) || {
          entry_id: ev.entry_id,
          campaign: { id: ev.campaign_id, name: '', dispositions: ev.dispositions || [] },
          record: null,
          draft: newDraft(),
        };
        card.result = ev.result;
        card.state = ev.state;
        card.next_attempt_at = ev.next_attempt_at;
        card.attempts = ev.attempts;
        if (ev.dispositions) card.campaign = { ...card.campaign, dispositions: ev.dispositions };
        card.phase = ev.needs_disposition ? 'wrapup' : 'result';
        this.cards.set(ev.entry_id, card);
        break;
      }
      case 'dialer.released':
        if (this.cards.has(ev.entry_id)) toast(s('released'));
        this.cards.delete(ev.entry_id);
        break;
      case 'reminder':
        this.reminders.set(ev.reminder_id, ev);
        this.remind(ev);
        break;
      default:
        return;
    }
    this.render();
  }

  remind(r) {
    const text = s(r.kind === 'meeting' ? 'reminder_meeting' : 'reminder_task', { subject: r.subject });
    toast(`${text}${sep()}${whenText(r)}`, 'info', 10000);
    const background = document.hidden || !document.hasFocus();
    if (background && 'Notification' in window && Notification.permission === 'granted') {
      try {
        const note = new Notification(s('reminders'), { body: text, tag: `reminder-${r.reminder_id}`, lang: language() });
        note.onclick = () => {
          window.focus();
          note.close();
        };
      } catch {
        // only a service worker may notify on some platforms; the toast is there
      }
    }
  }

  render() {
    const cards = [...this.cards.values()].map((c) => this.cardView(c));
    const reminders = [...this.reminders.values()].map((r) => this.reminderView(r));
    fill(
      this.el,
      cards,
      reminders.length ? h('section', { class: 'card reminders' }, h('h3', {}, s('reminders')), h('ul', {}, reminders)) : null,
    );
    this.el.setAttribute('aria-label', s('panel'));
    this.el.hidden = !cards.length && !reminders.length;
  }

  cardView(card) {
    const rec = card.record || {};
    const campaign = card.campaign || {};
    const head = h(
      'header',
      {},
      h('h3', {}, `${s('campaign')}: ${campaign.name || ''}`),
      card.callback ? h('span', { class: 'badge' }, s('callback_badge')) : null,
      card.max_attempts
        ? h('span', { class: 'muted' }, ` ${localDigits(s('attempt', { n: (card.attempts || 0) + (card.phase === 'preview' ? 1 : 0), max: card.max_attempts }))}`)
        : null,
    );
    const who = rec.name
      ? h(
          'div',
          { class: 'dialer-customer' },
          h('a', { href: rec.url || '#', class: 'customer-name' }, rec.name),
          rec.company ? h('span', { class: 'muted' }, `${sep()}${rec.company}`) : null,
          card.phone ? h('div', {}, h('bdi', { dir: 'ltr', class: 'num' }, formatPhone(card.phone))) : null,
          rec.local_time ? h('div', { class: 'muted' }, localDigits(s('local_time', { time: rec.local_time }))) : null,
          rec.best_time_to_call ? h('div', { class: 'muted' }, localDigits(s('best_time', { time: rec.best_time_to_call }))) : null,
        )
      : null;
    const script = card.script && card.phase !== 'result' ? h('div', { class: 'dialer-script' }, card.script) : null;
    let body = null;
    if (card.phase === 'preview') {
      body = h(
        'div',
        { class: 'buttons' },
        h('button', { type: 'button', class: 'primary dialer-dial', onclick: (e) => this.dial(card, e.target) }, s('dial')),
        h('button', { type: 'button', class: 'dialer-skip', onclick: (e) => this.skip(card, e.target) }, s('skip')),
      );
    } else if (card.phase === 'calling') {
      body = h('p', { class: 'muted' }, s('calling'));
    } else if (card.phase === 'wrapup') {
      body = this.wrapupForm(card);
    } else if (card.phase === 'result') {
      const next = card.next_attempt_at
        ? s('next_attempt', { when: formatDate(card.next_attempt_at) })
        : card.state === 'exhausted'
          ? s('no_more')
          : '';
      body = h(
        'div',
        {},
        h('p', {}, `${s(`result_${card.result}`)}${next ? sep() + next : ''}`),
        h('button', { type: 'button', class: 'dialer-dismiss', onclick: () => this.drop(card) }, s('dismiss')),
      );
    }
    return h('section', { class: ['card', 'dialer-card', `dialer-${card.phase}`], dataset: { entry: String(card.entry_id) } }, head, who, script, body);
  }

  wrapupForm(card) {
    const id = card.entry_id;
    const draft = card.draft;
    const dispositions = (card.campaign && card.campaign.dispositions) || [];
    const needsTime = () => {
      const d = dispositions.find((x) => x.code === draft.code);
      return !!d && d.outcome === 'callback';
    };
    const when = h('input', {
      id: `dialer-cb-at-${id}`,
      type: 'datetime-local',
      value: draft.callbackAt,
      oninput: (e) => {
        draft.callbackAt = e.target.value;
      },
    });
    const forWho = h(
      'select',
      {
        id: `dialer-cb-for-${id}`,
        onchange: (e) => {
          draft.callbackFor = e.target.value;
        },
      },
      h('option', { value: 'me' }, s('callback_me')),
      h('option', { value: 'anyone' }, s('callback_anyone')),
    );
    forWho.value = draft.callbackFor;
    const callbackBox = h(
      'div',
      { class: 'dialer-callback' },
      h('label', { for: `dialer-cb-at-${id}` }, s('callback_at')),
      when,
      h('label', { for: `dialer-cb-for-${id}` }, s('callback_for')),
      forWho,
    );
    callbackBox.hidden = !needsTime();
    const code = h(
      'select',
      {
        id: `dialer-code-${id}`,
        class: 'dialer-code',
        required: true,
        onchange: (e) => {
          draft.code = e.target.value;
          callbackBox.hidden = !needsTime();
          when.required = needsTime();
        },
      },
      h('option', { value: '' }, s('choose')),
      dispositions.map((d) => h('option', { value: d.code }, label(d))),
    );
    code.value = draft.code;
    when.required = needsTime();
    const note = h('textarea', {
      id: `dialer-note-${id}`,
      rows: '2',
      oninput: (e) => {
        draft.note = e.target.value;
      },
    });
    note.value = draft.note;
    return h(
      'form',
      {
        class: 'dialer-wrapup',
        onsubmit: (e) => {
          e.preventDefault();
          this.dispose(card, e.target);
        },
      },
      h('label', { for: `dialer-code-${id}` }, s('disposition')),
      code,
      h('label', { for: `dialer-note-${id}` }, s('note')),
      note,
      callbackBox,
      h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary dialer-save' }, s('save'))),
    );
  }

  reminderView(r) {
    const text = s(r.kind === 'meeting' ? 'reminder_meeting' : 'reminder_task', { subject: r.subject });
    return h(
      'li',
      { class: 'reminder', dataset: { reminder: String(r.reminder_id) } },
      h('span', {}, text),
      h('span', { class: 'muted' }, whenText(r)),
      r.record ? h('a', { href: r.record.url, class: 'reminder-record' }, r.record.name || s('open_record')) : null,
      h('button', { type: 'button', class: 'link reminder-dismiss', onclick: () => this.dismissReminder(r) }, s('dismiss')),
    );
  }

  async dial(card, button) {
    button.disabled = true;
    try {
      const out = await this.api.post(`/api/v1/dialer/entries/${card.entry_id}/dial`);
      if (out.dialled) {
        card.phase = 'calling';
      } else {
        toast(s('error', { message: out.reason || '' }), 'error');
        this.cards.delete(card.entry_id);
      }
    } catch (err) {
      toast(s('error', { message: err.detail || err.message }), 'error');
    }
    this.render();
  }

  async skip(card, button) {
    button.disabled = true;
    try {
      await this.api.post(`/api/v1/dialer/entries/${card.entry_id}/skip`, {});
      this.cards.delete(card.entry_id);
    } catch (err) {
      toast(s('error', { message: err.detail || err.message }), 'error');
    }
    this.render();
  }

  async dispose(card, form) {
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    const draft = card.draft;
    const body = { code: draft.code, callback_for: draft.callbackFor };
    if (draft.note.trim()) body.note = draft.note.trim();
    const d = (card.campaign.dispositions || []).find((x) => x.code === draft.code);
    if (d && (d.outcome === 'callback' || d.outcome === 'retry') && draft.callbackAt) {
      body.callback_at = new Date(draft.callbackAt).toISOString();
    }
    try {
      await this.api.post(`/api/v1/dialer/entries/${card.entry_id}/disposition`, body);
      toast(s('saved'), 'ok');
      this.cards.delete(card.entry_id);
    } catch (err) {
      toast(s('error', { message: err.detail || err.message }), 'error');
      button.disabled = false;
    }
    this.render();
  }

  drop(card) {
    this.cards.delete(card.entry_id);
    this.render();
  }

  async dismissReminder(r) {
    this.reminders.delete(r.reminder_id);
    this.render();
    try {
      await this.api.post(`/api/v1/automation/reminders/${r.reminder_id}/dismiss`);
    } catch {
      // gone already: nothing to dismiss
    }
  }
}

function newDraft() {
  const later = new Date(Date.now() + 60 * 60 * 1000);
  later.setMinutes(0, 0, 0);
  return { code: '', note: '', callbackAt: localInput(later), callbackFor: 'me' };
}

function phaseOf(state) {
  if (state === 'offered') return 'preview';
  if (state === 'wrapup') return 'wrapup';
  return 'calling';
}

function whenText(r) {
  const minutes = r.at ? Math.round((new Date(r.at).getTime() - Date.now()) / 60000) : r.minutes;
  if (minutes === undefined || minutes === null || Number.isNaN(minutes)) return '';
  if (minutes === 0) return s('reminder_now');
  const text = minutes > 0 ? s('reminder_in', { minutes }) : s('reminder_overdue', { minutes: -minutes });
  return `${localDigits(text)}${sep()}${formatDate(r.at)}`;
}

/** Mount the panel on the desktop: listens to the hub, reloads on each (re)connect. */
export function mountDialer({ hub, api }) {
  const panel = new DialerPanel(api);
  hub.addEventListener('event', (e) => panel.onEvent(e.detail));
  hub.addEventListener('welcome', () => panel.reload());
  document.addEventListener('tamas:language', () => panel.render());
  return panel;
}
