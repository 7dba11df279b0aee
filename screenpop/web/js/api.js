// The REST API (same origin), authenticated with the bearer token from the login.

const SESSION_KEY = 'tamas.session';

export class ApiError extends Error {
  constructor(status, data) {
    super((data && data.error) || `HTTP ${status}`);
    this.status = status;
    this.data = data || {};
  }

  /** The message plus each field error, for a toast. */
  get detail() {
    const errors = (this.data.errors || []).map((e) => `${e.field}: ${e.reason}`);
    return [this.message, ...errors].join(' · ');
  }
}

export class Api {
  constructor(token, { onUnauthorized } = {}) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, body) {
    const headers = { Accept: 'application/json', Authorization: `Bearer ${this.token}` };
    const init = { method, headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, { error: `network: ${err.message}` });
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = { error: text.slice(0, 200) };
      }
    }
    if (resp.status === 401 && this.onUnauthorized) this.onUnauthorized();
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }

  get(path) {
    return this.request('GET', path);
  }

  post(path, body = {}) {
    return this.request('POST', path, body);
  }

  patch(path, body) {
    return this.request('PATCH', path, body);
  }
}

export async function login(username, password) {
  const resp = await fetch('/api/v1/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export async function logout(api) {
  try {
    await api.request('POST', '/api/v1/auth/logout');
  } catch {
    // already expired: nothing to revoke
  }
  clearSession();
}

/** The token lives in sessionStorage: one tab, gone when the tab is closed. */
export function saveSession(session) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (s && s.token && new Date(s.expires_at) > new Date()) return s;
  } catch {
    // corrupt: start over
  }
  return null;
}

export function clearSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

export const q = encodeURIComponent;
