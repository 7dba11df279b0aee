// What the desktop and the wallboard share: sign-in, the session, the language switch, the
// connection indicator and the clock offset to the gateway.

import { Api, ApiError, clearSession, loadSession, login, logout, saveSession } from './api.js';
import { fill, h, toast } from './dom.js';
import { language, LANGUAGES, setLanguage, t } from './i18n.js';

const LANG_KEY = 'tamas.lang';

/** Milliseconds to add to Date.now() to get the gateway's clock (from the page's meta). */
export function serverOffset() {
  const meta = document.querySelector('meta[name="tamas-server-time"]');
  const server = meta ? Number(meta.content) : NaN;
  return Number.isFinite(server) ? server - Date.now() : 0;
}

let offset = 0;
export function initClock() {
  offset = serverOffset();
  // Within a couple of seconds is page-load latency, not a wrong clock: trust the PC.
  if (Math.abs(offset) < 2000) offset = 0;
}

/** Now in epoch seconds on the gateway's clock. */
export function nowSeconds() {
  return (Date.now() + offset) / 1000;
}

export function rememberLanguage(lang) {
  localStorage.setItem(LANG_KEY, lang);
  return setLanguage(lang);
}

export function initialLanguage() {
  const stored = localStorage.getItem(LANG_KEY);
  return setLanguage(stored && LANGUAGES[stored] ? stored : 'fa');
}

/** Render the sign-in form into `root`; resolves with the new session. */
export function signIn(root, titleKey, message) {
  document.title = t(titleKey);
  return new Promise((resolve) => {
    const error = h('p', { class: 'error', role: 'alert' }, message || '');
    const user = h('input', {
      id: 'login-username',
      name: 'username',
      autocomplete: 'username',
      required: true,
      autofocus: true,
    });
    const pass = h('input', {
      id: 'login-password',
      name: 'password',
      type: 'password',
      autocomplete: 'current-password',
      required: true,
    });
    const langBtn = h(
      'button',
      {
        type: 'button',
        class: 'link',
        lang: language() === 'fa' ? 'en' : 'fa',
        onclick: () => {
          rememberLanguage(language() === 'fa' ? 'en' : 'fa');
          signIn(root, titleKey, message).then(resolve);
        },
      },
      t('switch_language'),
    );
    const form = h(
      'form',
      {
        class: 'login card',
        id: 'login-form',
        onsubmit: async (e) => {
          e.preventDefault();
          error.textContent = '';
          const submit = form.querySelector('button[type=submit]');
          submit.disabled = true;
          try {
            const out = await login(user.value.trim(), pass.value);
            const session = { token: out.token, expires_at: out.expires_at, user: out.user };
            saveSession(session);
            // Asked on the sign-in click: browsers only allow the prompt after a gesture.
            if ('Notification' in window && Notification.permission === 'default') {
              Notification.requestPermission().catch(() => {});
            }
            resolve(session);
          } catch (err) {
            const reason = err instanceof ApiError ? err.message : String(err);
            error.textContent = t('login_failed', { reason });
            submit.disabled = false;
            pass.select();
          }
        },
      },
      h('h1', {}, t(titleKey)),
      h('label', { for: 'login-username' }, t('username')),
      user,
      h('label', { for: 'login-password' }, t('password')),
      pass,
      h('button', { type: 'submit', class: 'primary' }, t('login')),
      error,
      langBtn,
    );
    fill(root, h('main', { class: 'login-page' }, form));
    user.focus();
  });
}

const MESSAGE_KEY = 'tamas.message';

/** The session from this tab, or a fresh sign-in (showing why the last one ended). */
export async function session(root, titleKey) {
  const existing = loadSession();
  if (existing) return existing;
  const why = sessionStorage.getItem(MESSAGE_KEY);
  sessionStorage.removeItem(MESSAGE_KEY);
  return signIn(root, titleKey, why ? t(why) : '');
}

export function makeApi(onUnauthorized) {
  const s = loadSession();
  return new Api(s ? s.token : '', { onUnauthorized });
}

export async function signOut(api) {
  await logout(api);
  window.location.reload();
}

/** The session is over (expired, revoked, deactivated): back to the sign-in form. */
export function expire(messageKey) {
  clearSession();
  sessionStorage.setItem(MESSAGE_KEY, messageKey);
  window.location.reload();
}

/** The connection indicator: a dot plus text, updated from HubClient status events. */
export function connectionBadge() {
  const el = h('span', { class: 'conn', id: 'conn', role: 'status', dataset: { status: 'idle' } });
  el.update = (detail) => {
    el.dataset.status = detail.status;
    const text = {
      open: t('conn_open'),
      connecting: t('conn_connecting'),
      reconnecting: t('conn_reconnecting', { seconds: Math.ceil((detail.delay || 0) / 1000) }),
      fatal: t('conn_fatal'),
      idle: '',
    }[detail.status];
    el.textContent = text ?? detail.status;
    el.last = detail;
  };
  return el;
}

/** Flip fa <-> en, remember it on the server (the user's language) and locally. */
export async function switchLanguage(api) {
  const next = language() === 'fa' ? 'en' : 'fa';
  rememberLanguage(next);
  try {
    await api.patch('/api/v1/me', { language: next });
  } catch (err) {
    toast(t('error', { message: err.message }), 'error');
  }
  return next;
}
