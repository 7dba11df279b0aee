// The live link to the gateway's hub (/ws, protocol in docs/websocket.md).
//
// * hello first (token, last seq, epoch); the hub answers welcome, then either the events
//   missed since last_seq (same epoch) or a snapshot;
// * every event carries a per-user seq: duplicates are dropped, a gap forces a reconnect
//   (the hub then replays or sends a snapshot), so no pop is ever silently lost;
// * reconnects back off exponentially with jitter; 4409 (fell behind) retries at once;
//   4401/4403 are final (the session is over);
// * heartbeat: a ping per tick and a check that the previous ping was answered. Hidden tabs
//   get their timers throttled (down to one per minute) but still receive socket messages,
//   so the check counts from when the ping was sent, never from how often ticks come.

export const FATAL_CODES = { 4401: 'unauthorized', 4403: 'deactivated' };

export function backoffDelay(attempt, { min = 500, max = 30000, random = Math.random } = {}) {
  const base = Math.min(max, min * 2 ** Math.max(0, attempt));
  return Math.round(base * (0.8 + 0.4 * random()));
}

export function defaultUrl(loc = window.location) {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}

export class HubClient extends EventTarget {
  constructor({
    token,
    url = defaultUrl(),
    heartbeatMs = 15000,
    pongTimeoutMs = 10000,
    backoff = {},
  } = {}) {
    super();
    this.token = token;
    this.url = url;
    this.heartbeatMs = heartbeatMs;
    this.pongTimeoutMs = pongTimeoutMs;
    this.backoff = backoff;
    this.ws = null;
    this.lastSeq = null;
    this.epoch = null;
    this.attempts = 0;
    this.status = 'idle';
    this.stopped = true;
    this.pingOutstanding = false;
    this.pingSentAt = 0;
    this.lastRx = 0;
    this.connects = 0;
    this._timer = null;
    this._retry = null;
    this._onVisible = () => {
      if (document.visibilityState === 'visible') this.tick();
    };
    this._onOnline = () => {
      if (!this.ws) this._reconnectNow();
    };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    document.addEventListener('visibilitychange', this._onVisible);
    window.addEventListener('online', this._onOnline);
    this._timer = setInterval(() => this.tick(), this.heartbeatMs);
    this._connect();
  }

  stop() {
    this.stopped = true;
    clearInterval(this._timer);
    clearTimeout(this._retry);
    document.removeEventListener('visibilitychange', this._onVisible);
    window.removeEventListener('online', this._onOnline);
    if (this.ws) this.ws.close(1000, 'bye');
    this.ws = null;
    this._setStatus('idle');
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setStatus(status, extra = {}) {
    this.status = status;
    this._emit('status', { status, ...extra });
  }

  _connect() {
    clearTimeout(this._retry);
    this._setStatus('connecting');
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.pingOutstanding = false;
    ws.addEventListener('open', () => {
      this.connects += 1;
      ws.send(
        JSON.stringify({
          type: 'hello',
          token: this.token,
          last_seq: this.lastSeq,
          epoch: this.epoch,
        }),
      );
    });
    ws.addEventListener('message', (ev) => {
      if (ws === this.ws) this._onMessage(ev.data);
    });
    ws.addEventListener('close', (ev) => this._onClose(ws, ev));
  }

  _onMessage(data) {
    this.lastRx = Date.now();
    this.pingOutstanding = false; // any frame proves the link is alive
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    switch (frame.type) {
      case 'pong':
        return;
      case 'welcome':
        if (this.epoch !== null && frame.epoch !== this.epoch) this.lastSeq = null;
        this.epoch = frame.epoch;
        this.attempts = 0;
        this._setStatus('open');
        this._emit('welcome', frame);
        return;
      case 'snapshot':
        this.lastSeq = frame.seq;
        this._emit('snapshot', frame);
        return;
      default:
        break;
    }
    if (typeof frame.seq === 'number') {
      if (this.lastSeq !== null && frame.seq <= this.lastSeq) return; // replayed twice
      if (this.lastSeq !== null && frame.seq !== this.lastSeq + 1) {
        this.restart('gap');
        return;
      }
      this.lastSeq = frame.seq;
    }
    this._emit('event', frame);
  }

  _onClose(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    if (this.stopped) return;
    if (FATAL_CODES[ev.code]) {
      this.stopped = true;
      clearInterval(this._timer);
      this._setStatus('fatal', { code: ev.code, reason: ev.reason, kind: FATAL_CODES[ev.code] });
      return;
    }
    const delay = ev.code === 4409 ? 0 : backoffDelay(this.attempts, this.backoff);
    this.attempts += 1;
    this._setStatus('reconnecting', { code: ev.code, reason: ev.reason, delay });
    this._retry = setTimeout(() => this._connect(), delay);
  }

  _reconnectNow() {
    clearTimeout(this._retry);
    if (!this.stopped && !this.ws) this._connect();
  }

  /** Drop the socket and reconnect at once (seq gap, dead link). */
  restart(reason = 'restart') {
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(4000, reason);
    if (!this.stopped) this._connect();
  }

  /** One heartbeat step: give up on a link whose last ping went unanswered, else ping. */
  tick(now = Date.now()) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (this.pingOutstanding) {
      if (now - this.pingSentAt > this.pongTimeoutMs) this.restart('heartbeat');
      return;
    }
    ws.send('{"type":"ping"}');
    this.pingOutstanding = true;
    this.pingSentAt = now;
  }
}
