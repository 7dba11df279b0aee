// The agent desktop: my state, the live pop, the customer record, wrap-up and search.
//
// The hub pushes pops over the websocket; everything the agent does goes through the REST
// API. The agent answers on their phone (desk phone or softphone); the page follows the
// call through pop.update / pop.close / call.ended.

import { ApiError, q } from './api.js';
import { $, dialog, fill, h, ltr, toast } from './dom.js';
import {
  formatDate,
  formatDuration,
  formatNumber,
  formatPhone,
  labelOf,
  language,
  latinDigits,
  localDigits,
  setLanguage,
  phoneKind,
  sep,
  setTimeZone,
  t,
} from './i18n.js';
import { knowledgeButton, knowledgeShortcut } from './kb.js';
import { installShortcuts, showHelp } from './keys.js';
import {
  connectionBadge,
  expire,
  initClock,
  initialLanguage,
  makeApi,
  nowSeconds,
  rememberLanguage,
  session as getSession,
  signOut,
  switchLanguage,
} from './shell.js';
import { loadScripts, renderScripts } from './scripts.js';
import { mountDialer } from './dialer.js';
import { applyEvent, applySnapshot, emptyState, effectiveState } from './store.js';
import { HubClient } from './ws.js';

const PLURAL = { contact: 'contacts', lead: 'leads', account: 'accounts' };
const TITLE = 'app_title';

const app = {
  root: null,
  api: null,
  hub: null,
  config: null,
  user: null,
  users: new Map(),
  state: emptyState(),
  me: { state: 'unknown', since: null, reason: null, queues: [] },
  cards: new Map(), // "pbx/call_id" -> call card (ringing, answered, held, ended)
  record: null, // the record shown in the main area
  els: {},
  shortcuts: [],
};

// -- start ------------------------------------------------------------------------------------

async function main() {
  app.root = document.getElementById('root');
  initClock();
  initialLanguage();
  const session = await getSession(app.root, TITLE);
  start(session);
}

async function start(session) {
  app.user = session.user;
  setLanguage(session.user.language || language());
  app.api = makeApi(() => stop('session_expired'));
  try {
    app.config = await app.api.get('/api/v1/desktop/config');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // expire() reloads
    app.config = { dispositions: [], pause_reasons: [], queues: [], agents: [] };
    toast(t('error', { message: err.message }), 'error');
  }
  if (app.config.user) {
    app.user = app.config.user;
    rememberLanguage(app.user.language || language());
  }
  setTimeZone(app.config.timezone);
  loadUsers();
  renderShell();
  app.shortcuts = installShortcuts([
    { key: '/', label: 'shortcut_search', run: () => app.els.search.focus() },
    { key: 'a', label: 'shortcut_call', run: focusCurrentCall },
    { key: 'n', label: 'shortcut_note', run: focusNote },
    { key: 's', label: 'shortcut_state', run: () => app.els.stateSelect.focus() },
    { key: 'l', label: 'shortcut_language', run: toggleLanguage },
    knowledgeShortcut(() => app.api),
  ]);
  window.addEventListener('hashchange', () => route());
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) updateTitle();
  });
  setInterval(tick, 1000);
  connect(session.token);
  route();
}

function stop(messageKey) {
  if (app.hub) app.hub.stop();
  expire(messageKey);
}

async function loadUsers() {
  try {
    const out = await app.api.get('/api/v1/users');
    app.users = new Map(out.items.map((u) => [u.id, u.full_name || u.username]));
  } catch {
    app.users = new Map(); // the role may not list users: names then show as #id
  }
}

function userName(id) {
  if (!id) return t('none');
  return app.users.get(id) || `#${localDigits(String(id))}`;
}

// -- websocket --------------------------------------------------------------------------------

function connect(token) {
  const hub = new HubClient({ token });
  app.hub = hub;
  mountDialer({ hub, api: app.api }); // campaign cards and reminders (dialer.js)
  hub.addEventListener('status', (e) => {
    app.els.conn.update(e.detail);
    if (e.detail.status === 'fatal') {
      stop(e.detail.kind === 'deactivated' ? 'deactivated' : 'session_expired');
    }
  });
  hub.addEventListener('welcome', (e) => {
    const u = e.detail.user || {};
    if (u.language && u.language !== language()) {
      rememberLanguage(u.language);
      renderAll();
    }
    loadMyState();
  });
  hub.addEventListener('snapshot', (e) => {
    const { state, effects } = applySnapshot(app.state, e.detail);
    app.state = state;
    const mine = state.agents.get(app.user.id);
    if (mine) setMyState(mine);
    effects.forEach(handleEffect);
    renderLinks();
  });
  hub.addEventListener('event', (e) => {
    applyEvent(app.state, e.detail).forEach(handleEffect);
  });
  hub.start();
}

async function loadMyState() {
  try {
    const live = await app.api.get('/api/v1/calls/live');
    for (const view of Object.values(live.pbx || {})) {
      const mine = (view.agents || {})[`user:${app.user.id}`];
      if (mine) {
        setMyState({
          state: mine.state,
          since: mine.since,
          reason: mine.pause_reason,
          queues: mine.queues,
        });
        return;
      }
    }
    setMyState({ state: 'logged_out', since: null, reason: null, queues: [] });
  } catch {
    // the PBX may be down; agent.state events will tell
  }
}

function handleEffect(fx) {
  switch (fx.kind) {
    case 'ring':
    case 'pop':
      upsertCard(fx.key, fx.pop, fx.kind === 'ring');
      break;
    case 'update':
      updateCard(fx.key, fx.pop);
      break;
    case 'close':
      closeCard(fx.key, fx.pop, fx.reason);
      break;
    case 'ended':
      endCard(fx.key, fx.call);
      break;
    case 'agent':
      if (fx.agent.id === app.user.id) setMyState(fx.agent);
      break;
    case 'link':
    case 'refresh':
      renderLinks();
      renderCalls();
      break;
    default:
      break;
  }
}

// -- call cards -------------------------------------------------------------------------------

function phaseOf(state) {
  if (state === 'held') return 'held';
  if (state === 'answered' || state === 'unheld' || state === 'transferred') return 'answered';
  return 'ringing';
}

function newCard(key, pop) {
  return {
    key,
    pbx: pop.pbx,
    callId: pop.call_id,
    pop,
    phase: phaseOf(pop.state),
    answeredAt: null,
    endedAt: null,
    activityId: pop.activity_id ?? null,
    record: pop.matches && pop.matches.length ? pop.matches[0] : null,
    draft: { note: '', disposition: '', callback: false, callbackAt: '' },
    talkSeconds: null,
  };
}

function upsertCard(key, pop, ringing) {
  let card = app.cards.get(key);
  if (card) {
    card.pop = { ...card.pop, ...pop };
    card.phase = card.phase === 'ended' ? 'ended' : phaseOf(pop.state);
  } else {
    card = newCard(key, pop);
    app.cards.set(key, card);
  }
  if (card.phase !== 'ringing' && !card.answeredAt) card.answeredAt = nowSeconds();
  renderCalls();
  if (ringing) {
    notifyRinging(card);
    // Open the caller's record at once, unless the agent is busy with another call.
    const busy = [...app.cards.values()].some((c) => c !== card && c.phase !== 'ringing');
    if (card.record && card.record.in_scope !== false && !busy) openRecord(card.record.type, card.record.id);
  }
  updateTitle();
}

function updateCard(key, pop) {
  const card = app.cards.get(key) || newCard(key, pop);
  app.cards.set(key, card);
  card.pop = { ...card.pop, ...pop };
  if (card.phase !== 'ended') card.phase = phaseOf(pop.state);
  if (card.phase !== 'ringing' && !card.answeredAt) card.answeredAt = nowSeconds();
  if (pop.activity_id) card.activityId = pop.activity_id;
  renderCalls();
  updateTitle();
  if (card.phase === 'answered' && document.activeElement === document.body) focusCurrentCall();
}

function closeCard(key, pop, reason) {
  const card = app.cards.get(key);
  if (!card) return;
  if (pop.activity_id) card.activityId = pop.activity_id;
  if (card.phase === 'ringing' || reason === 'answered_elsewhere' || reason === 'transferred_away') {
    app.cards.delete(key);
  } else {
    // Talked: keep the card for the wrap-up until it is saved.
    card.phase = 'ended';
    card.endedAt = card.endedAt || nowSeconds();
  }
  renderCalls();
  updateTitle();
}

function endCard(key, call) {
  let card = app.cards.get(key);
  if (!card) {
    if (!call.answered) return;
    card = newCard(key, { pbx: call.pbx, call_id: call.call_id, state: 'answered', matches: [] });
    app.cards.set(key, card);
  }
  card.phase = 'ended';
  card.endedAt = nowSeconds();
  card.talkSeconds = call.talk_seconds ?? null;
  if (call.activity_id) card.activityId = call.activity_id;
  renderCalls();
  updateTitle();
  if (card.record && app.record && isShowing(card.record.type, card.record.id)) {
    refreshTimeline();
  }
}

function callerName(card) {
  if (card.record && card.record.name) return card.record.name;
  if (card.pop.caller_name) return card.pop.caller_name;
  return formatPhone(callNumber(card));
}

function notifyRinging(card) {
  const background = document.hidden || !document.hasFocus();
  if (!background || !('Notification' in window) || Notification.permission !== 'granted') return;
  const body = card.record
    ? `${card.record.name}${sep()}${formatPhone(callNumber(card))}`
    : t('notify_unknown', { number: formatPhone(callNumber(card)) });
  try {
    const note = new Notification(t('notify_title'), {
      body,
      tag: card.key,
      requireInteraction: true,
      lang: language(),
      dir: language() === 'fa' ? 'rtl' : 'ltr',
    });
    note.onclick = () => {
      window.focus();
      focusCard(card.key);
      note.close();
    };
    card.notification = note;
  } catch {
    // some platforms only allow notifications from a service worker; the title still flashes
  }
}

function updateTitle() {
  const ringing = [...app.cards.values()].find((c) => c.phase === 'ringing');
  document.title = ringing ? `${t('title_ringing', { name: callerName(ringing) })}${sep()}${t(TITLE)}` : t(TITLE);
  for (const c of app.cards.values()) {
    if (c.phase !== 'ringing' && c.notification) {
      c.notification.close();
      c.notification = null;
    }
  }
}

function focusCard(key) {
  const el = document.querySelector(`.call-card[data-key="${CSS.escape(key)}"]`);
  if (el) el.focus();
}

function currentCard() {
  const cards = [...app.cards.values()];
  return (
    cards.find((c) => c.phase === 'answered' || c.phase === 'held') ||
    cards.find((c) => c.phase === 'ringing') ||
    cards.find((c) => c.phase === 'ended')
  );
}

function focusCurrentCall() {
  const card = currentCard();
  if (card) focusCard(card.key);
  else app.els.calls.focus();
}

function focusNote() {
  const card = currentCard();
  const field = card && document.getElementById(`note-${cssId(card.key)}`);
  if (field) field.focus();
}

function cssId(key) {
  return key.replace(/[^A-Za-z0-9_-]/g, '_');
}

// -- rendering: shell -------------------------------------------------------------------------

function renderShell() {
  document.title = t(TITLE);
  const conn = connectionBadge();
  if (app.els.conn && app.els.conn.last) conn.update(app.els.conn.last);
  const stateSelect = h('select', {
    id: 'agent-state',
    'aria-label': t('my_state'),
    onchange: (e) => changeState(e.target.value),
  });
  const stateBadge = h('span', { class: 'state-badge', id: 'state-badge' });
  const search = h('input', {
    id: 'search',
    type: 'search',
    placeholder: t('search_placeholder'),
    'aria-label': t('search'),
    autocomplete: 'off',
  });
  const header = h(
    'header',
    { class: 'topbar' },
    h('a', { class: 'brand', href: '#/' }, t(TITLE)),
    h('div', { class: 'state-box' }, h('label', { for: 'agent-state' }, t('my_state')), stateSelect, stateBadge),
    h(
      'form',
      {
        role: 'search',
        class: 'search',
        onsubmit: (e) => {
          e.preventDefault();
          const text = search.value.trim();
          if (text) window.location.hash = `#/search/${q(text)}`;
        },
      },
      search,
      h('button', { type: 'submit' }, t('search')),
    ),
    conn,
    h('button', { type: 'button', id: 'lang-toggle', lang: language() === 'fa' ? 'en' : 'fa', onclick: toggleLanguage }, t('switch_language')),
    knowledgeButton(() => app.api),
    h('button', { type: 'button', id: 'help-button', onclick: () => showHelp(app.shortcuts) }, t('help')),
    h('span', { class: 'who' }, app.user.full_name || app.user.username),
    h('button', { type: 'button', onclick: () => signOut(app.api) }, t('logout')),
  );
  const links = h('div', { id: 'links', role: 'alert' });
  const calls = h('section', { id: 'calls', class: 'calls', tabindex: '-1', 'aria-label': t('calls') });
  const mainEl = h('section', { id: 'main', class: 'main', tabindex: '-1', 'aria-live': 'polite' });
  fill(app.root, header, links, h('div', { class: 'layout' }, calls, mainEl));
  app.els = { conn, stateSelect, stateBadge, search, calls, main: mainEl, links };
  renderStateSelector();
  renderLinks();
  renderCalls();
}

function renderAll() {
  const searchText = app.els.search ? app.els.search.value : '';
  renderShell();
  app.els.search.value = searchText;
  route();
}

async function toggleLanguage() {
  await switchLanguage(app.api);
  app.user.language = language();
  renderAll();
}

function renderLinks() {
  const down = [...app.state.links].filter(([, s]) => s !== 'up' && s !== 'connected');
  fill(app.els.links, down.map(([pbx]) => h('p', { class: 'banner' }, t('pbx_down', { pbx }))));
}

// -- my state ---------------------------------------------------------------------------------

function setMyState(agent) {
  app.me = {
    state: agent.state,
    since: agent.since,
    reason: agent.reason,
    queues: agent.queues || [],
  };
  renderStateSelector();
}

function stateValue(me) {
  const state = effectiveState(me);
  if (state === 'logged_out') return 'logged_out';
  if (state === 'paused') return `paused:${me.reason || ''}`;
  return 'available';
}

function renderStateSelector() {
  const sel = app.els.stateSelect;
  if (!sel) return;
  const reasons = app.config.pause_reasons || [];
  const options = [
    h('option', { value: 'available' }, t('state_available')),
    ...reasons.map((r) =>
      h('option', { value: `paused:${r.code}` }, t('state_paused_reason', { reason: labelOf(reasons, r.code) })),
    ),
    h('option', { value: 'logged_out' }, t('state_logged_out')),
  ];
  const value = stateValue(app.me);
  if (value.startsWith('paused:') && !reasons.some((r) => `paused:${r.code}` === value)) {
    options.splice(1, 0, h('option', { value }, t('state_paused_reason', { reason: app.me.reason || t('state_paused') })));
  }
  fill(sel, options);
  sel.value = value;
  const state = effectiveState(app.me);
  sel.dataset.state = state;
  const badge = app.els.stateBadge;
  badge.dataset.state = state;
  const label =
    state === 'paused' && app.me.reason
      ? t('state_paused_reason', { reason: labelOf(reasons, app.me.reason) })
      : t(`state_${state}`);
  fill(badge, label, app.me.since ? [' ', h('span', { class: 'timer', dataset: { since: app.me.since } }, formatDuration(nowSeconds() - app.me.since))] : null);
}

function myQueues() {
  const qs = new Set([...(app.config.queues || []), ...(app.me.queues || [])]);
  return [...qs];
}

async function changeState(value) {
  const me = app.user.id;
  const wasOut = effectiveState(app.me) === 'logged_out';
  try {
    if (value === 'logged_out') {
      for (const queue of app.me.queues.length ? app.me.queues : myQueues()) {
        await app.api.post(`/api/v1/agents/${me}/queues`, { queue, login: false });
      }
    } else {
      if (wasOut) {
        for (const queue of myQueues()) {
          await app.api.post(`/api/v1/agents/${me}/queues`, { queue, login: true });
        }
      }
      if (value === 'available') {
        await app.api.post(`/api/v1/agents/${me}/pause`, { paused: false });
      } else {
        const reason = value.slice('paused:'.length);
        await app.api.post(`/api/v1/agents/${me}/pause`, { paused: true, reason });
      }
    }
  } catch (err) {
    toast(t('state_change_failed', { message: err.detail || err.message }), 'error');
    renderStateSelector(); // back to what the PBX says
  }
}

// -- rendering: calls -------------------------------------------------------------------------

function renderCalls() {
  const el = app.els.calls;
  if (!el) return;
  const cards = [...app.cards.values()];
  const focused = document.activeElement && el.contains(document.activeElement) ? document.activeElement.id : null;
  fill(
    el,
    h('h2', {}, t('calls')),
    cards.length ? cards.map(renderCard) : h('p', { class: 'muted' }, t('no_calls')),
  );
  if (focused) {
    const again = document.getElementById(focused);
    if (again) again.focus();
  }
}

function renderCard(card) {
  const pop = card.pop;
  const n = pop.number || {};
  const id = cssId(card.key);
  const inbound = (pop.direction || 'inbound') !== 'outbound';
  const since = card.phase === 'ringing' ? pop.started_at : card.answeredAt;
  const headTimer =
    card.phase === 'ended'
      ? h('span', { class: 'timer' }, formatDuration(card.talkSeconds ?? card.endedAt - (card.answeredAt || card.endedAt)))
      : since
        ? h('span', { class: 'timer', dataset: { since } }, formatDuration(nowSeconds() - since))
        : null;
  return h(
    'article',
    {
      class: ['call-card', `phase-${card.phase}`],
      tabindex: '-1',
      dataset: { key: card.key, callId: card.callId, phase: card.phase },
      'aria-labelledby': `card-title-${id}`,
    },
    h(
      'header',
      {},
      h('h3', { id: `card-title-${id}` }, inbound ? t('incoming_call') : t('outgoing_call')),
      h('span', { class: ['badge', `phase-${card.phase}`] }, t(`call_state_${card.phase === 'held' ? 'held' : card.phase}`)),
      headTimer,
    ),
    h(
      'p',
      { class: 'caller-number' },
      ltr(formatPhone(callNumber(card))),
      pop.queue ? h('span', { class: 'muted' }, `${sep()}${t('queue')}: ${pop.queue}`) : null,
      pop.wait_seconds ? h('span', { class: 'muted' }, `${sep()}${t('waited')}: ${formatDuration(pop.wait_seconds)}`) : null,
    ),
    pop.answered_by && pop.answered_by.id !== app.user.id
      ? h('p', { class: 'muted' }, t('answered_by', { name: pop.answered_by.name }))
      : null,
    renderMatches(card),
    card.phase === 'ringing' ? h('p', { class: 'hint' }, t('answer_on_phone')) : null,
    card.phase === 'answered' || card.phase === 'held' ? renderControls(card) : null,
    card.phase !== 'ringing' ? renderWrapup(card) : null,
  );
}

function renderMatches(card) {
  const matches = [...(card.pop.matches || [])];
  if (card.record && !matches.some((m) => m.type === card.record.type && m.id === card.record.id)) {
    matches.unshift(card.record);
  }
  if (!matches.length) {
    return h(
      'div',
      { class: 'unknown' },
      h('p', { class: 'caller-name' }, t('unknown_caller')),
      h('button', { type: 'button', class: 'create-lead', onclick: () => createLeadDialog(card) }, t('create_lead')),
      ' ',
      h('button', { type: 'button', class: 'link-record', onclick: () => linkRecordDialog(card) }, t('link_to_record')),
    );
  }
  return [
    h('ul', { class: 'matches' }, matches.map((m) => h('li', {}, customerSummary(m)))),
    card.pop.more_matches ? h('p', { class: 'muted' }, t('more_matches', { n: card.pop.more_matches })) : null,
    card.pop.transferred_from ? h('p', { class: 'muted' }, t('transferred_from', { name: card.pop.transferred_from.name })) : null,
  ];
}

function customerSummary(m) {
  const open = () => openRecord(m.type, m.id);
  return h(
    'div',
    { class: 'summary', dataset: { type: m.type, id: m.id } },
    h(
      'p',
      { class: 'caller-name' },
      m.in_scope === false
        ? h('span', { class: 'record-name' }, m.name || `${t(m.type)} #${m.id}`)
        : h('button', { type: 'button', class: 'link open-record', onclick: open }, m.name || `${t(m.type)} #${m.id}`),
      ' ',
      h('span', { class: 'badge' }, t(m.type)),
      m.vip ? h('span', { class: 'badge vip' }, t('vip')) : null,
      m.do_not_call ? h('span', { class: 'badge dnc' }, t('do_not_call')) : null,
    ),
    m.account ? h('p', { class: 'muted' }, m.account.name) : null,
    (m.tags || []).length ? h('p', { class: 'tags' }, m.tags.map((tag) => h('span', { class: 'tag' }, tag))) : null,
    m.best_time_to_call ? h('p', { class: 'muted' }, `${t('best_time_to_call')}: `, ltr(localDigits(m.best_time_to_call))) : null,
    (m.open_deals || []).length
      ? h('p', {}, `${t('open_deals')}: `, m.open_deals.map((d) => d.name).join('، '))
      : null,
    (m.open_cases || []).length
      ? h('p', {}, `${t('open_cases')}: `, m.open_cases.map((c) => c.subject).join('، '))
      : null,
    (m.recent || []).length
      ? h(
          'details',
          {},
          h('summary', {}, t('recent_activity')),
          h('ul', { class: 'recent' }, m.recent.map((a) => h('li', {}, `${formatDate(a.occurred_at, 'date')}${sep()}${t(`kind_${a.kind}`)}${sep()}${a.subject || ''}`))),
        )
      : null,
  );
}

function renderControls(card) {
  const held = card.phase === 'held';
  return h(
    'div',
    { class: 'controls' },
    h(
      'button',
      {
        type: 'button',
        class: 'hold',
        onclick: () => callAction(card, 'hold', { on: !held }),
      },
      held ? t('unhold') : t('hold'),
    ),
    h('button', { type: 'button', class: 'danger hangup', onclick: () => callAction(card, 'hangup', {}) }, t('hangup')),
  );
}

async function callAction(card, action, body) {
  try {
    await app.api.post(`/api/v1/calls/${q(card.pbx)}/${q(card.callId)}/${action}`, body);
  } catch (err) {
    toast(t('error', { message: err.detail || err.message }), 'error');
  }
}

function defaultCallbackAt() {
  const d = new Date(Date.now() + 60 * 60 * 1000);
  d.setMinutes(0, 0, 0);
  const pad = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function renderWrapup(card) {
  const id = cssId(card.key);
  const draft = card.draft;
  const dispositions = app.config.dispositions || [];
  const note = h('textarea', {
    id: `note-${id}`,
    name: 'note',
    rows: '3',
    oninput: (e) => {
      draft.note = e.target.value;
    },
  });
  note.value = draft.note;
  const dispo = h(
    'select',
    {
      id: `dispo-${id}`,
      name: 'disposition',
      required: true,
      onchange: (e) => {
        draft.disposition = e.target.value;
      },
    },
    h('option', { value: '' }, t('choose')),
    dispositions.map((d) => h('option', { value: d.code }, labelOf(dispositions, d.code))),
  );
  dispo.value = draft.disposition;
  const when = h('input', {
    id: `cb-at-${id}`,
    name: 'callback_at',
    type: 'datetime-local',
    hidden: !draft.callback,
    value: draft.callbackAt || defaultCallbackAt(),
    oninput: (e) => {
      draft.callbackAt = e.target.value;
      preview.textContent = e.target.value ? formatDate(new Date(e.target.value)) : '';
    },
  });
  const preview = h('span', { class: 'muted', hidden: !draft.callback }, formatDate(new Date(when.value)));
  const callback = h('input', {
    id: `cb-${id}`,
    name: 'callback',
    type: 'checkbox',
    checked: draft.callback,
    onchange: (e) => {
      draft.callback = e.target.checked;
      draft.callbackAt = when.value;
      when.hidden = !draft.callback;
      preview.hidden = !draft.callback;
      when.required = draft.callback;
    },
  });
  return h(
    'form',
    {
      class: 'wrapup',
      onsubmit: (e) => {
        e.preventDefault();
        saveWrapup(card, e.target);
      },
    },
    h('h4', {}, t('wrapup')),
    h('label', { for: `note-${id}` }, t('note')),
    note,
    h('label', { for: `dispo-${id}` }, t('disposition')),
    dispo,
    h('div', { class: 'check' }, callback, h('label', { for: `cb-${id}` }, t('schedule_callback'))),
    h('label', { for: `cb-at-${id}`, class: 'sr-only' }, t('callback_at')),
    when,
    preview,
    h(
      'div',
      { class: 'buttons' },
      h('button', { type: 'submit', class: 'primary save-wrapup' }, t('save_wrapup')),
      card.phase === 'ended'
        ? h('button', { type: 'button', class: 'dismiss', onclick: () => dismissCard(card) }, t('dismiss'))
        : null,
    ),
  );
}

function dismissCard(card) {
  app.cards.delete(card.key);
  renderCalls();
  updateTitle();
}

async function findActivity(card) {
  if (card.activityId) return card.activityId;
  const out = await app.api.get(
    `/api/v1/activities?kind=call&pbx=${q(card.pbx)}&call_uid=${q(card.callId)}&limit=1`,
  );
  if (out.items.length) card.activityId = out.items[0].id;
  return card.activityId;
}

async function saveWrapup(card, form) {
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  const draft = card.draft;
  try {
    const id = await findActivity(card);
    if (!id) throw new Error('the call is not in the call log yet');
    const body = { disposition: draft.disposition };
    if (draft.note.trim()) body.body = draft.note.trim();
    const activity = await app.api.patch(`/api/v1/activities/${id}`, body);
    if (draft.callback && draft.callbackAt) {
      const links = {};
      for (const k of ['contact_id', 'lead_id', 'account_id']) if (activity[k]) links[k] = activity[k];
      await app.api.post('/api/v1/activities', {
        kind: 'task',
        is_callback: true,
        subject: t('callback_subject', { name: callerName(card) }).slice(0, 200),
        body: draft.note.trim() || null,
        due_at: new Date(draft.callbackAt).toISOString(),
        assignee_id: app.user.id,
        status: 'open',
        priority: 'normal',
        ...links,
      });
    }
    toast(t('wrapup_saved'), 'ok');
    if (card.phase === 'ended') app.cards.delete(card.key);
    renderCalls();
    updateTitle();
    if (app.record) refreshTimeline();
  } catch (err) {
    toast(t('error', { message: err.detail || err.message }), 'error');
    button.disabled = false;
  }
}

// -- unknown callers --------------------------------------------------------------------------

function callNumber(card) {
  const n = card.pop.number || {};
  return n.e164 || n.raw || n.display || '';
}

/** Put the caller's number on a record and the call on its timeline. The number comes
 * from the call log on the server: agents may only see it masked. */
async function attachCallNumber(card, type, id) {
  const n = card.pop.number || {};
  const activity = await findActivity(card).catch(() => null);
  let body = null;
  if (activity) body = { activity_id: activity };
  else if (!n.masked && (n.e164 || n.raw)) body = { number: n.e164 || n.raw };
  if (!body) throw new Error('the call is not in the call log yet');
  await app.api.post(`/api/v1/${PLURAL[type]}/${id}/phones`, body);
  if (activity) {
    await app.api.patch(`/api/v1/activities/${activity}`, { [`${type}_id`]: id }).catch(() => {});
  }
}

function createLeadDialog(card) {
  const first = h('input', { id: 'lead-first', name: 'first_name', autofocus: true });
  const last = h('input', { id: 'lead-last', name: 'last_name' });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h(
    'form',
    {
      class: 'stack',
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const lead = await app.api.post('/api/v1/leads', {
            first_name: first.value.trim(),
            last_name: last.value.trim(),
            source: 'inbound_call',
          });
          card.record = { type: 'lead', id: lead.id, name: lead.name || `${t('lead')} #${lead.id}` };
          await attachCallNumber(card, 'lead', lead.id);
          dlg.close();
          toast(t('lead_created'), 'ok');
          renderCalls();
          openRecord('lead', lead.id);
        } catch (err) {
          error.textContent = err.status === 409 ? `${t('duplicate')} (${err.message})` : err.detail || err.message;
        }
      },
    },
    h('p', {}, `${t('number')}: `, ltr(formatPhone(callNumber(card)))),
    h('label', { for: 'lead-first' }, t('first_name')),
    first,
    h('label', { for: 'lead-last' }, t('last_name')),
    last,
    error,
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, t('create_lead'))),
  );
  const dlg = dialog(t('create_lead'), form, { id: 'create-lead' });
  first.focus();
}

function linkRecordDialog(card) {
  const input = h('input', { id: 'link-q', type: 'search', 'aria-label': t('search'), placeholder: t('search_placeholder') });
  const results = h('ul', { class: 'results', id: 'link-results' });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h(
    'form',
    {
      class: 'stack',
      role: 'search',
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const out = await app.api.get(`/api/v1/search?q=${q(input.value.trim())}`);
          fill(
            results,
            out.items.length
              ? out.items.map((r) =>
                  h('li', {}, resultLine(r), ' ', h('button', { type: 'button', class: 'choose', onclick: () => attach(r) }, t('choose_record'))),
                )
              : h('li', { class: 'muted' }, t('no_results')),
          );
        } catch (err) {
          error.textContent = err.detail || err.message;
        }
      },
    },
    h('p', {}, t('link_hint'), ' ', ltr(formatPhone(callNumber(card)))),
    input,
    h('button', { type: 'submit' }, t('search')),
    error,
    results,
  );
  async function attach(r) {
    try {
      await attachCallNumber(card, r.type, r.id);
      card.record = { type: r.type, id: r.id, name: r.name };
      dlg.close();
      toast(t('number_linked'), 'ok');
      renderCalls();
      openRecord(r.type, r.id);
    } catch (err) {
      error.textContent = err.detail || err.message;
    }
  }
  const dlg = dialog(t('link_to_record'), form, { id: 'link-record' });
  input.focus();
}

// -- routing and the main area ----------------------------------------------------------------

function openRecord(type, id) {
  const hash = `#/${type}/${id}`;
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

function isShowing(type, id) {
  return app.record && app.record.type === type && app.record.id === Number(id);
}

function route() {
  const parts = window.location.hash.replace(/^#\/?/, '').split('/');
  if (PLURAL[parts[0]] && /^\d+$/.test(parts[1] || '')) {
    showRecord(parts[0], Number(parts[1]));
  } else if (parts[0] === 'search' && parts[1]) {
    showSearch(decodeURIComponent(parts.slice(1).join('/')));
  } else {
    showHome();
  }
}

function showHome() {
  app.record = null;
  fill(
    app.els.main,
    h('div', { class: 'card welcome' }, h('h2', {}, t('welcome', { name: app.user.full_name || app.user.username })), h('p', {}, t('welcome_hint'))),
  );
}

function resultLine(r) {
  return h(
    'span',
    { class: 'result' },
    h('strong', {}, r.name || `#${r.id}`),
    ' ',
    h('span', { class: 'badge' }, t(r.type)),
    r.vip ? h('span', { class: 'badge vip' }, t('vip')) : null,
    r.detail ? h('span', { class: 'muted' }, `${sep()}${r.detail}`) : null,
    r.email ? h('span', { class: 'muted' }, sep(), ltr(r.email, 'email')) : null,
    (r.phones || []).slice(0, 2).map((p) => [sep(), ltr(formatPhone(p.number))]),
  );
}

async function showSearch(text) {
  app.record = null;
  app.els.search.value = text;
  fill(app.els.main, h('p', { class: 'muted' }, t('loading')));
  try {
    const out = await app.api.get(`/api/v1/search?q=${q(latinDigits(text))}`);
    fill(
      app.els.main,
      h(
        'section',
        { class: 'card' },
        h('h2', {}, t('search_results', { q: text })),
        out.items.length
          ? h(
              'ul',
              { class: 'results', id: 'search-results' },
              out.items.map((r) => h('li', {}, h('a', { href: `#/${r.type}/${r.id}`, class: 'result-link' }, resultLine(r)))),
            )
          : h('p', {}, t('no_results')),
      ),
    );
    const first = app.els.main.querySelector('.result-link');
    if (first) first.focus();
  } catch (err) {
    fill(app.els.main, h('p', { class: 'error' }, t('error', { message: err.detail || err.message })));
  }
}

async function showRecord(type, id) {
  const plural = PLURAL[type];
  app.record = { type, id };
  fill(app.els.main, h('p', { class: 'muted' }, t('loading')));
  let rec;
  try {
    rec = await app.api.get(`/api/v1/${plural}/${id}`);
  } catch (err) {
    fill(app.els.main, h('p', { class: 'error' }, t('error', { message: err.detail || err.message })));
    return;
  }
  if (!isShowing(type, id)) return; // the agent moved on meanwhile
  const fk = `${type}_id`;
  const [timeline, deals, cases, script, account] = await Promise.all([
    app.api.get(`/api/v1/${plural}/${id}/timeline?limit=50`).catch(() => ({ items: [] })),
    type === 'lead' ? { items: [] } : app.api.get(`/api/v1/deals?${fk}=${id}&status=open&limit=20`).catch(() => ({ items: [] })),
    app.api.get(`/api/v1/cases?${fk}=${id}&limit=20`).catch(() => ({ items: [] })),
    // The campaign's and the lead list's scripts, filled in (scripts.js).
    loadScripts(app.api, type, id, callCampaign(type, id)),
    type === 'contact' && rec.account_id
      ? app.api.get(`/api/v1/accounts/${rec.account_id}`).catch(() => null)
      : null,
  ]);
  if (!isShowing(type, id)) return;
  app.record = { type, id, rec };
  const name = rec.name || rec.full_name || `${t(type)} #${id}`;
  fill(
    app.els.main,
    h(
      'article',
      { class: 'record', dataset: { type, id }, 'aria-labelledby': 'record-title' },
      h(
        'header',
        { class: 'record-head' },
        h('h2', { id: 'record-title' }, name),
        h('span', { class: 'badge' }, t(type)),
        rec.is_vip ? h('span', { class: 'badge vip' }, t('vip')) : null,
        rec.do_not_call ? h('span', { class: 'badge dnc' }, t('do_not_call')) : null,
      ),
      h(
        'div',
        { class: 'record-grid' },
        h(
          'div',
          { class: 'col' },
          renderDetails(type, rec, account),
          renderPhones(type, rec),
          renderScripts(script),
          renderNoteForm(type, id),
        ),
        h(
          'div',
          { class: 'col' },
          h('section', { class: 'card', id: 'timeline', 'aria-labelledby': 'timeline-title' }, h('h3', { id: 'timeline-title' }, t('timeline')), renderTimeline(timeline.items)),
          type !== 'lead' ? renderList('deals', t('deals'), deals.items, (d) => [d.title, sep(), d.amount_display || formatNumber(Number(d.amount)), sep(), d.status]) : null,
          renderList('cases', t('cases'), cases.items, (c) => [c.subject, sep(), c.priority, sep(), c.status]),
        ),
      ),
    ),
  );
}

function renderDetails(type, rec, account) {
  const rows = [
    [t('company'), type === 'contact' ? (account ? account.name : null) : type === 'lead' ? rec.company : rec.industry],
    [t('email'), rec.email ? ltr(rec.email, 'email') : null],
    [t('owner'), rec.owner_id ? userName(rec.owner_id) : null],
    [t('status'), rec.status],
    [t('lifecycle_stage'), rec.lifecycle_stage],
    [t('preferred_channel'), rec.preferred_channel],
    [t('best_time_to_call'), rec.best_time_to_call ? ltr(localDigits(rec.best_time_to_call)) : null],
    [t('language'), rec.language],
    [t('tags'), (rec.tags || []).length ? rec.tags.map((tag) => h('span', { class: 'tag' }, tag)) : null],
  ].filter(([, v]) => v !== null && v !== undefined && v !== '');
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'details-title' },
    h('h3', { id: 'details-title' }, t('details')),
    h('dl', { class: 'details' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
  );
}

function renderPhones(type, rec) {
  const phones = rec.phones || [];
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'phones-title' },
    h('h3', { id: 'phones-title' }, t('phones')),
    phones.length
      ? h(
          'ul',
          { class: 'phones' },
          phones.map((p, index) => {
            const shown = formatPhone(p.number);
            return h(
              'li',
              {},
              ltr(shown),
              p.extension ? h('span', { class: 'muted' }, ` x${localDigits(p.extension)}`) : null,
              h('span', { class: 'muted' }, `${sep()}${phoneKind(p.kind)}`),
              ' ',
              h(
                'button',
                {
                  type: 'button',
                  class: 'call-btn',
                  dataset: { index },
                  disabled: rec.do_not_call,
                  title: rec.do_not_call ? t('do_not_call') : null,
                  'aria-label': t('call_number', { number: shown }),
                  onclick: () => clickToCall(type, rec.id, index),
                },
                t('call'),
              ),
            );
          }),
        )
      : h('p', { class: 'muted' }, t('empty')),
  );
}

async function clickToCall(type, id, index) {
  try {
    await app.api.post('/api/v1/calls/click-to-call', { entity: type, id, phone_index: index });
    toast(t('calling'), 'ok');
  } catch (err) {
    toast(t('call_failed', { message: err.detail || err.message }), 'error');
  }
}

/** The campaign of the call with this record, if a call card has one (outbound dialler). */
function callCampaign(type, id) {
  const card = [...app.cards.values()].find((c) => c.record && c.record.type === type && c.record.id === id);
  return card ? card.pop.campaign_id || null : null;
}

function renderNoteForm(type, id) {
  const text = h('textarea', { id: 'record-note', rows: '3', required: true });
  return h(
    'section',
    { class: 'card' },
    h(
      'form',
      {
        class: 'stack',
        onsubmit: async (e) => {
          e.preventDefault();
          const body = text.value.trim();
          if (!body) return;
          try {
            await app.api.post('/api/v1/activities', {
              kind: 'note',
              subject: body.split('\n')[0].slice(0, 200),
              body,
              [`${type}_id`]: id,
            });
            text.value = '';
            toast(t('note_added'), 'ok');
            refreshTimeline();
          } catch (err) {
            toast(t('error', { message: err.detail || err.message }), 'error');
          }
        },
      },
      h('label', { for: 'record-note' }, t('add_note')),
      text,
      h('div', { class: 'buttons' }, h('button', { type: 'submit' }, t('add_note'))),
    ),
  );
}

function renderTimeline(items) {
  const dispositions = app.config.dispositions || [];
  if (!items.length) return h('p', { class: 'muted' }, t('empty'));
  return h(
    'ol',
    { class: 'timeline' },
    items.map((a) =>
      h(
        'li',
        { class: ['activity', `kind-${a.kind}`], dataset: { id: a.id, kind: a.kind } },
        h(
          'div',
          { class: 'activity-head' },
          h('span', { class: 'badge' }, t(`kind_${a.kind}`)),
          a.direction ? h('span', { class: 'muted' }, ` ${t(`dir_${a.direction}`)}`) : null,
          ' ',
          h('time', { datetime: a.occurred_at }, formatDate(a.occurred_at)),
          a.kind === 'call' && a.talk_s !== null && a.talk_s !== undefined ? h('span', { class: 'muted' }, `${sep()}${t('talk_time')} ${formatDuration(a.talk_s)}`) : null,
          a.agent_id ? h('span', { class: 'muted' }, `${sep()}${userName(a.agent_id)}`) : null,
        ),
        a.kind !== 'call' && a.subject ? h('p', { class: 'subject' }, a.subject) : null,
        a.kind === 'call' && a.external_number ? h('p', { class: 'subject' }, ltr(formatPhone(a.external_number))) : null,
        a.disposition ? h('p', {}, h('span', { class: 'badge disposition', dataset: { code: a.disposition } }, labelOf(dispositions, a.disposition))) : null,
        a.body && a.body !== a.subject ? h('p', { class: 'body' }, a.body) : null,
        a.due_at ? h('p', { class: 'muted' }, `${t('due')}: `, formatDate(a.due_at)) : null,
        (a.recordings || []).map(renderRecording),
      ),
    ),
  );
}

/** A call's recording on the timeline: a player (loaded only when played: every play is
 * audited), or why it cannot be played. */
function renderRecording(rec) {
  if (rec.audio_url) {
    return h(
      'p',
      { class: 'recording', dataset: { id: rec.id } },
      h('audio', { controls: true, preload: 'none', src: rec.audio_url, 'aria-label': t('recording') }),
      rec.duration_s !== null && rec.duration_s !== undefined ? h('span', { class: 'muted' }, ` ${formatDuration(Math.floor(rec.duration_s))}`) : null,
    );
  }
  const problem = rec.status === 'ingesting' || rec.status === 'pending' ? null : rec.error;
  return h(
    'p',
    { class: ['recording', 'muted'], dataset: { id: rec.id, status: rec.status } },
    t(`recording_${rec.status}`),
    problem ? h('span', { class: 'recording-error', dir: 'ltr' }, ` (${problem})`) : null,
  );
}

function renderList(id, title, items, line) {
  return h(
    'section',
    { class: 'card', id, 'aria-labelledby': `${id}-title` },
    h('h3', { id: `${id}-title` }, title),
    items.length ? h('ul', {}, items.map((x) => h('li', {}, line(x)))) : h('p', { class: 'muted' }, t('empty')),
  );
}

async function refreshTimeline() {
  if (!app.record) return;
  const { type, id } = app.record;
  try {
    const timeline = await app.api.get(`/api/v1/${PLURAL[type]}/${id}/timeline?limit=50`);
    const box = $('#timeline');
    if (box && isShowing(type, id)) fill(box, h('h3', { id: 'timeline-title' }, t('timeline')), renderTimeline(timeline.items));
  } catch {
    // shown again on the next visit
  }
}

// -- clock ------------------------------------------------------------------------------------

function tick() {
  const now = nowSeconds();
  for (const el of document.querySelectorAll('[data-since]')) {
    el.textContent = formatDuration(now - Number(el.dataset.since));
  }
}

main();
