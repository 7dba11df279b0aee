// The supervisor wallboard: queues, agents and calls in progress, all pushed by the hub
// (never polled); actions go through the REST API.

import { ApiError, q } from './api.js';
import { dialog, fill, h, ltr, toast } from './dom.js';
import {
  formatDate,
  formatDuration,
  formatNumber,
  formatPercent,
  formatPhone,
  labelOf,
  language,
  setLanguage,
  sep,
  setTimeZone,
  t,
} from './i18n.js';
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
import { applyEvent, applySnapshot, effectiveState, emptyState, longestWait } from './store.js';
import { HubClient } from './ws.js';

const TITLE = 'wallboard_title';

const app = {
  root: null,
  api: null,
  hub: null,
  config: null,
  user: null,
  state: emptyState(),
  queueSeen: new Map(), // queue -> local time its stats arrived (longest wait keeps ticking)
  callbacks: [],
  els: {},
  shortcuts: [],
};

async function main() {
  app.root = document.getElementById('root');
  initClock();
  initialLanguage();
  const session = await getSession(app.root, TITLE);
  app.user = session.user;
  setLanguage(session.user.language || language());
  app.api = makeApi(() => stop('session_expired'));
  try {
    app.config = await app.api.get('/api/v1/desktop/config');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    app.config = { pause_reasons: [], agents: [], queues: [] };
  }
  if (app.config.user) {
    app.user = app.config.user;
    rememberLanguage(app.user.language || language());
  }
  setTimeZone(app.config.timezone);
  render();
  app.shortcuts = installShortcuts([
    { key: 'q', label: 'shortcut_queues', run: () => app.els.queues.focus() },
    { key: 'g', label: 'shortcut_agents', run: () => app.els.agents.focus() },
    { key: 'l', label: 'shortcut_language', run: toggleLanguage },
  ]);
  setInterval(tick, 1000);
  connect(session.token);
  loadCallbacks();
}

function stop(messageKey) {
  if (app.hub) app.hub.stop();
  expire(messageKey);
}

function connect(token) {
  const hub = new HubClient({ token });
  app.hub = hub;
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
      render();
    }
  });
  hub.addEventListener('snapshot', (e) => {
    app.state = applySnapshot(app.state, e.detail).state;
    const now = nowSeconds();
    for (const name of app.state.queues.keys()) app.queueSeen.set(name, now);
    renderData();
  });
  hub.addEventListener('event', (e) => {
    for (const fx of applyEvent(app.state, e.detail)) {
      if (fx.kind === 'queue') {
        app.queueSeen.set(fx.queue.queue, nowSeconds());
        renderQueues();
      } else if (fx.kind === 'abandoned') {
        refreshCallbacksSoon(); // a missed caller becomes a callback task
      } else if (fx.kind === 'agent') {
        renderAgents();
      } else if (fx.kind === 'call' || fx.kind === 'call_gone') {
        renderCalls();
        if (fx.kind === 'call_gone') refreshCallbacksSoon();
      } else if (fx.kind === 'link') {
        renderLinks();
      }
    }
  });
  hub.start();
}

// -- layout -----------------------------------------------------------------------------------

function section(id, title, extra = {}) {
  return h(
    'section',
    { id, class: 'card board-section', tabindex: '-1', 'aria-labelledby': `${id}-title`, ...extra },
    h('h2', { id: `${id}-title` }, title),
    h('div', { class: 'content' }),
  );
}

function render() {
  document.title = t(TITLE);
  const conn = connectionBadge();
  if (app.els.conn && app.els.conn.last) conn.update(app.els.conn.last);
  const header = h(
    'header',
    { class: 'topbar' },
    h('span', { class: 'brand' }, t(TITLE)),
    conn,
    h('button', { type: 'button', id: 'lang-toggle', lang: language() === 'fa' ? 'en' : 'fa', onclick: toggleLanguage }, t('switch_language')),
    h('button', { type: 'button', id: 'help-button', onclick: () => showHelp(app.shortcuts) }, t('help')),
    h('span', { class: 'who' }, app.user.full_name || app.user.username),
    h('button', { type: 'button', onclick: () => signOut(app.api) }, t('logout')),
  );
  const links = h('div', { id: 'links', role: 'alert' });
  const notice =
    app.user.scope && app.user.scope === 'own' ? h('p', { class: 'banner' }, t('not_supervisor')) : null;
  const queues = section('queues', t('queues'));
  const agents = section('agents', t('agents'));
  const calls = section('live-calls', t('live_calls'));
  const callbacks = section('callbacks', t('callbacks'));
  fill(app.root, header, links, notice, h('main', { class: 'board' }, queues, agents, calls, callbacks));
  app.els = { conn, links, queues, agents, calls, callbacks };
  renderData();
}

async function toggleLanguage() {
  await switchLanguage(app.api);
  render();
}

function body(el) {
  return el.querySelector('.content');
}

function renderData() {
  renderLinks();
  renderQueues();
  renderAgents();
  renderCalls();
  renderCallbacks();
}

function renderLinks() {
  const down = [...app.state.links].filter(([, s]) => s !== 'up' && s !== 'connected');
  fill(app.els.links, down.map(([pbx]) => h('p', { class: 'banner' }, t('pbx_down', { pbx }))));
}

// -- queues -----------------------------------------------------------------------------------

/** A number object of the hub ({raw, e164, display}) or a plain string. */
function numberText(n) {
  if (n && typeof n === 'object') return n.e164 || n.display || n.raw || '';
  return n || '';
}

function stat(label, value, cls = '', extra = {}) {
  return h('div', { class: ['stat', cls] }, h('dt', {}, label), h('dd', extra, value));
}

function renderQueues() {
  const queues = [...app.state.queues.values()].sort((a, b) => a.queue.localeCompare(b.queue));
  const now = nowSeconds();
  fill(
    body(app.els.queues),
    queues.length
      ? h(
          'div',
          { class: 'tiles' },
          queues.map((s) => {
            const wait = longestWait(s, app.queueSeen.get(s.queue) || now, now);
            return h(
              'article',
              { class: ['tile', s.waiting ? 'has-waiting' : ''], dataset: { queue: s.queue }, 'aria-label': `${t('queue')} ${s.queue}` },
              h('h3', {}, s.queue),
              h(
                'dl',
                {},
                stat(t('waiting'), formatNumber(s.waiting ?? 0), 'big waiting'),
                stat(t('longest_wait'), formatDuration(wait), 'longest', {
                  dataset: { waitBase: wait, waitAt: now, ticking: s.waiting ? '1' : '' },
                }),
                stat(t('answered'), formatNumber(s.answered ?? 0), 'answered'),
                stat(t('abandoned'), formatNumber(s.abandoned ?? 0), 'abandoned'),
                stat(t('avg_wait'), formatDuration(s.avg_wait), 'avg-wait'),
                stat(t('avg_talk'), formatDuration(s.avg_talk), 'avg-talk'),
                stat(t('service_level'), formatPercent(s.service_level_pct), 'sl'),
              ),
              s.members !== undefined
                ? h('p', { class: 'muted' }, t('agents_line', { available: s.available ?? 0, busy: s.busy ?? 0, paused: s.paused ?? 0 }))
                : null,
              (s.callers || []).length
                ? h(
                    'ol',
                    { class: 'callers' },
                    s.callers.map((c) =>
                      h('li', {}, ltr(formatPhone(numberText(c.number))), c.name ? ` ${c.name}` : '', sep(), h('span', { class: 'timer', dataset: { since: c.wait_since } }, formatDuration(now - c.wait_since))),
                    ),
                  )
                : null,
            );
          }),
        )
      : h('p', { class: 'muted' }, t('no_queues')),
  );
}

// -- agents -----------------------------------------------------------------------------------

function agentStateLabel(a) {
  const state = effectiveState(a);
  if (state === 'paused' && a.reason) {
    return t('state_paused_reason', { reason: labelOf(app.config.pause_reasons, a.reason) });
  }
  return t(`state_${state}`);
}

function renderAgents() {
  const agents = [...app.state.agents.values()].sort((a, b) => a.name.localeCompare(b.name));
  const now = nowSeconds();
  fill(
    body(app.els.agents),
    agents.length
      ? h(
          'table',
          { class: 'grid' },
          h('thead', {}, h('tr', {}, [t('agent'), t('state'), t('time_in_state'), t('queues'), t('actions')].map((x) => h('th', { scope: 'col' }, x)))),
          h(
            'tbody',
            {},
            agents.map((a) =>
              h(
                'tr',
                { dataset: { agentId: a.id, state: effectiveState(a) } },
                h('th', { scope: 'row' }, a.name),
                h('td', {}, h('span', { class: ['state-pill', `state-${effectiveState(a)}`] }, agentStateLabel(a))),
                h('td', {}, a.since ? h('span', { class: 'timer', dataset: { since: a.since } }, formatDuration(now - a.since)) : t('none')),
                h('td', {}, (a.queues || []).join('، ') || t('none')),
                h(
                  'td',
                  { class: 'actions' },
                  effectiveState(a) === 'paused'
                    ? h('button', { type: 'button', class: 'unpause', onclick: () => pauseAgent(a, false) }, t('unpause'))
                    : h('button', { type: 'button', class: 'pause', disabled: effectiveState(a) === 'logged_out', onclick: () => pauseDialog(a) }, t('pause')),
                  ' ',
                  h('button', { type: 'button', class: 'logout-agent', disabled: !(a.queues || []).length, onclick: () => logOutAgent(a) }, t('log_out_agent')),
                ),
              ),
            ),
          ),
        )
      : h('p', { class: 'muted' }, t('no_agents')),
  );
}

function pauseDialog(agent) {
  const reasons = app.config.pause_reasons || [];
  const select = h(
    'select',
    { id: 'pause-reason', required: true },
    reasons.map((r) => h('option', { value: r.code }, labelOf(reasons, r.code))),
  );
  const form = h(
    'form',
    {
      class: 'stack',
      onsubmit: async (e) => {
        e.preventDefault();
        dlg.close();
        await pauseAgent(agent, true, select.value);
      },
    },
    h('label', { for: 'pause-reason' }, t('reason')),
    select,
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, t('pause'))),
  );
  const dlg = dialog(t('pause_agent', { name: agent.name }), form, { id: 'pause-dialog' });
  select.focus();
}

async function pauseAgent(agent, paused, reason = '') {
  try {
    await app.api.post(`/api/v1/agents/${agent.id}/pause`, { paused, reason });
    toast(t('done'), 'ok');
  } catch (err) {
    toast(t('error', { message: err.detail || err.message }), 'error');
  }
}

async function logOutAgent(agent) {
  try {
    for (const queue of agent.queues || []) {
      await app.api.post(`/api/v1/agents/${agent.id}/queues`, { queue, login: false });
    }
    toast(t('done'), 'ok');
  } catch (err) {
    toast(t('error', { message: err.detail || err.message }), 'error');
  }
}

// -- live calls -------------------------------------------------------------------------------

function renderCalls() {
  const calls = [...app.state.calls.values()].sort((a, b) => (a.started_at || 0) - (b.started_at || 0));
  const now = nowSeconds();
  const agentName = (agent) => (agent && typeof agent === 'object' ? agent.name : agent) || t('none');
  fill(
    body(app.els.calls),
    calls.length
      ? h(
          'table',
          { class: 'grid' },
          h('thead', {}, h('tr', {}, [t('number'), t('agent'), t('queue'), t('state'), t('duration'), t('actions')].map((x) => h('th', { scope: 'col' }, x)))),
          h(
            'tbody',
            {},
            calls.map((c) =>
              h(
                'tr',
                { dataset: { callId: c.call_id, pbx: c.pbx } },
                h('td', {}, ltr(formatPhone(numberText(c.number))), c.caller_name ? ` ${c.caller_name}` : null),
                h('td', {}, agentName(c.agent)),
                h('td', {}, c.queue || t('none')),
                h('td', {}, t(`call_state_${c.state}`)),
                h('td', {}, c.started_at ? h('span', { class: 'timer', dataset: { since: c.started_at } }, formatDuration(now - c.started_at)) : t('none')),
                h(
                  'td',
                  { class: 'actions' },
                  ['listen', 'whisper', 'barge'].map((mode) => [
                    h('button', { type: 'button', class: `spy-${mode}`, disabled: !c.agent, onclick: () => spy(c, mode) }, t(mode)),
                    ' ',
                  ]),
                ),
              ),
            ),
          ),
        )
      : h('p', { class: 'muted' }, t('no_calls')),
  );
}

async function spy(call, mode) {
  try {
    await app.api.post(`/api/v1/calls/${q(call.pbx)}/${q(call.call_id)}/spy`, { mode });
    toast(t('spy_started', { mode: t(mode) }), 'ok');
  } catch (err) {
    toast(t('error', { message: err.detail || err.message }), 'error');
  }
}

// -- callbacks --------------------------------------------------------------------------------

/** The call log writes a missed call's callback task as the call ends, a moment after the
 * hub's event that tells us: look again shortly after the push (once, not polling). */
let callbacksTimer = null;
function refreshCallbacksSoon(ms = 1500) {
  clearTimeout(callbacksTimer);
  callbacksTimer = setTimeout(loadCallbacks, ms);
}

async function loadCallbacks() {
  try {
    const out = await app.api.get('/api/v1/activities?kind=task&is_callback=true&status=open&sort=due_at&limit=100');
    app.callbacks = out.items;
  } catch {
    app.callbacks = [];
  }
  renderCallbacks();
}

function agentLabel(id) {
  if (!id) return t('unassigned');
  const a = (app.config.agents || []).find((x) => x.id === id);
  return a ? a.name : `#${id}`;
}

function renderCallbacks() {
  const agents = app.config.agents || [];
  fill(
    body(app.els.callbacks),
    app.callbacks.length
      ? h(
          'table',
          { class: 'grid' },
          h('thead', {}, h('tr', {}, [t('callbacks'), t('due'), t('assignee'), t('reassign')].map((x) => h('th', { scope: 'col' }, x)))),
          h(
            'tbody',
            {},
            app.callbacks.map((task) => {
              const select = h(
                'select',
                { 'aria-label': `${t('reassign')}: ${task.subject}`, class: 'reassign-to' },
                agents.map((a) => h('option', { value: a.id, selected: a.id === task.assignee_id }, a.name)),
              );
              return h(
                'tr',
                { dataset: { taskId: task.id } },
                h('th', { scope: 'row' }, task.subject, task.external_number ? [sep(), ltr(formatPhone(task.external_number))] : null),
                h('td', {}, formatDate(task.due_at)),
                h('td', { class: 'assignee' }, agentLabel(task.assignee_id)),
                h(
                  'td',
                  { class: 'actions' },
                  select,
                  ' ',
                  h('button', { type: 'button', class: 'reassign', onclick: () => reassign(task, Number(select.value)) }, t('reassign')),
                ),
              );
            }),
          ),
        )
      : h('p', { class: 'muted' }, t('empty')),
  );
}

async function reassign(task, userId) {
  try {
    await app.api.patch(`/api/v1/activities/${task.id}`, { assignee_id: userId, owner_id: userId });
    toast(t('reassigned', { name: agentLabel(userId) }), 'ok');
    await loadCallbacks();
  } catch (err) {
    toast(t('error', { message: err.detail || err.message }), 'error');
  }
}

// -- clock ------------------------------------------------------------------------------------

function tick() {
  const now = nowSeconds();
  for (const el of document.querySelectorAll('[data-since]')) {
    el.textContent = formatDuration(now - Number(el.dataset.since));
  }
  for (const el of document.querySelectorAll('[data-ticking="1"]')) {
    el.textContent = formatDuration(Number(el.dataset.waitBase) + now - Number(el.dataset.waitAt));
  }
}

main();
