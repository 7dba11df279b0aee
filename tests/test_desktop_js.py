"""The desktop's JavaScript modules in Chromium: Jalali dates (checked against jdatetime),
digits and phone numbers in the user's language, the hub state reducer, and the websocket
client's sequence, reconnect and heartbeat rules (against a scripted fake socket)."""

from __future__ import annotations

import datetime as dt

import jdatetime
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from screenpop.pages import AssetBundle, setup_pages
from tests.desktop_kit import chromium, new_page

pytestmark = pytest.mark.browser

FAKE_SOCKET = """
window.__sockets = [];
class FakeSocket extends EventTarget {
  constructor(url) {
    super();
    this.url = url; this.readyState = 0; this.sent = []; this.closedWith = null;
    window.__sockets.push(this);
    setTimeout(() => { this.readyState = 1; this.dispatchEvent(new Event('open')); }, 0);
  }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code = 1000, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3; this.closedWith = code;
    setTimeout(() => this.dispatchEvent(new CloseEvent('close', { code, reason })), 0);
  }
  serve(frame) {
    this.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(frame) }));
  }
  drop(code, reason = '') {
    this.readyState = 3;
    this.dispatchEvent(new CloseEvent('close', { code, reason }));
  }
}
FakeSocket.CONNECTING = 0; FakeSocket.OPEN = 1; FakeSocket.CLOSING = 2; FakeSocket.CLOSED = 3;
window.WebSocket = FakeSocket;
"""


@pytest.fixture
async def page(chromium_path):
    app = web.Application()
    setup_pages(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with chromium(chromium_path) as browser:
            p = await new_page(browser, str(server.make_url("/")).rstrip("/"))
            await p.add_init_script(FAKE_SOCKET)
            await p.goto("/app")
            p.assets = AssetBundle.load().prefix
            yield p
            assert p.js_errors == []
    finally:
        await server.close()


def _expected_jalali(day: dt.date) -> tuple[str, str, str]:
    j = jdatetime.date.fromgregorian(date=day)
    digits = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
    return (
        str(j.year).translate(digits),
        jdatetime.date.j_months_fa[j.month - 1],
        str(j.day).translate(digits),
    )


async def test_persian_dates_are_jalali_and_agree_with_jdatetime(page):
    # Around Nowruz, leap years (1399, 1403) and their Esfand 30th, and the year's end.
    days = [
        dt.date(2024, 3, 19),
        dt.date(2024, 3, 20),
        dt.date(2025, 3, 20),
        dt.date(2025, 3, 21),
        dt.date(2021, 3, 20),
        dt.date(2020, 2, 29),
        dt.date(2023, 12, 31),
        dt.date(2026, 9, 22),
        dt.date(2026, 11, 23),
        dt.date(1999, 1, 1),
    ]
    shown = await page.evaluate(
        """async ([prefix, days]) => {
            const i18n = await import(prefix + '/js/i18n.js');
            i18n.setLanguage('fa');
            i18n.setTimeZone('UTC');
            return days.map((d) => i18n.formatDate(d + 'T12:00:00Z', 'date'));
        }""",
        [page.assets, [d.isoformat() for d in days]],
    )
    for day, text in zip(days, shown, strict=True):
        year, month, d = _expected_jalali(day)
        assert year in text and month in text, (day, text)
        assert f"{d} {month}" in text, (day, text)
        assert not any(c in text for c in "0123456789"), text  # Persian digits only


async def test_dates_follow_the_call_centres_time_zone(page):
    # 21:00 UTC on 19 March 2024 is already 00:30 on 1 Farvardin 1403 in Tehran.
    out = await page.evaluate(
        """async (prefix) => {
            const i18n = await import(prefix + '/js/i18n.js');
            i18n.setTimeZone('Asia/Tehran');
            i18n.setLanguage('fa');
            const fa = i18n.formatDate('2024-03-19T21:00:00Z');
            const bare = i18n.formatDate('2024-03-19T21:00:00');
            const epoch = i18n.formatDate(Date.UTC(2024, 2, 19, 21) / 1000);
            i18n.setLanguage('en');
            return [fa, bare, epoch, i18n.formatDate('2024-03-19T21:00:00Z'), document.dir];
        }""",
        page.assets,
    )
    fa, bare, epoch, en, direction = out
    assert "۱ فروردین ۱۴۰۳" in fa and "۰:۳۰" in fa
    assert bare == fa == epoch  # API times without an offset are UTC; epochs are seconds
    assert "20 Mar 2024" in en and "00:30" in en
    assert direction == "ltr"


async def test_numbers_durations_and_phones_in_the_users_digits(page):
    out = await page.evaluate(
        """async (prefix) => {
            const i18n = await import(prefix + '/js/i18n.js');
            const run = (lang) => {
                i18n.setLanguage(lang);
                return {
                    number: i18n.formatNumber(1234567),
                    percent: i18n.formatPercent(87.3),
                    duration: i18n.formatDuration(3725),
                    short: i18n.formatDuration(65),
                    mobile: i18n.formatPhone('+989121234567'),
                    landline: i18n.formatPhone('+982188776655'),
                    foreign: i18n.formatPhone('+14155552671'),
                    masked: i18n.formatPhone('+98912****567'),
                    text: i18n.t('agents_line', {available: 3, busy: 10, paused: 0}),
                    dir: document.documentElement.dir,
                    lang: document.documentElement.lang,
                };
            };
            const result = { fa: run('fa'), en: run('en') };
            result.latin = i18n.latinDigits('۰۹۱۲-٣٤٥');
            return result;
        }""",
        page.assets,
    )
    fa, en = out["fa"], out["en"]
    assert fa["number"] == "۱٬۲۳۴٬۵۶۷" and en["number"] == "1,234,567"
    assert fa["duration"] == "۱:۰۲:۰۵" and en["duration"] == "1:02:05"
    assert fa["short"] == "۱:۰۵" and en["short"] == "1:05"
    assert fa["mobile"] == "۰۹۱۲ ۱۲۳ ۴۵۶۷" and en["mobile"] == "0912 123 4567"
    assert en["landline"] == "021 8877 6655"
    assert en["foreign"] == "+14155552671" and fa["foreign"] == "+۱۴۱۵۵۵۵۲۶۷۱"
    assert en["masked"] == "0912****567"
    assert "۸۷" in fa["percent"] and en["percent"] == "87%"
    assert fa["text"].startswith("۳ ") and "۱۰" in fa["text"]
    assert (fa["dir"], fa["lang"]) == ("rtl", "fa") and (en["dir"], en["lang"]) == ("ltr", "en")
    assert out["latin"] == "0912-345"


async def test_the_state_reducer_follows_pops_queues_agents_and_calls(page):
    out = await page.evaluate(
        """async (prefix) => {
            const s = await import(prefix + '/js/store.js');
            const kinds = (fx) => fx.map((e) => e.kind);
            const log = [];
            let { state, effects } = s.applySnapshot(s.emptyState(), {
                seq: 4,
                pops: [{ pbx: 'lab', call_id: 'a', state: 'ringing' }],
                agents: [{ agent: { id: 7, name: 'Sara' }, state: 'ringing', since: 10 }],
                queues: [{ queue: 'sales', waiting: 1, abandoned: 0 }],
                calls: [], links: [{ pbx: 'lab', state: 'up' }],
            });
            log.push(kinds(effects));
            const apply = (ev) => kinds(s.applyEvent(state, ev));
            log.push(apply({ type: 'pop', pbx: 'lab', call_id: 'b', state: 'ringing' }));
            log.push(apply({ type: 'pop.update', pbx: 'lab', call_id: 'b', state: 'answered' }));
            log.push(state.pops.get('lab/b').state);
            log.push(apply({
                type: 'pop.close', pbx: 'lab', call_id: 'a', reason: 'answered_elsewhere',
            }));
            log.push([...state.pops.keys()]);
            log.push(apply({ type: 'queue.stats', queue: 'sales', waiting: 0, abandoned: 1 }));
            log.push(apply({
                type: 'agent.state', agent: { id: 7, name: 'Sara' }, state: 'paused',
                reason: 'lunch', since: 20,
            }));
            log.push(state.agents.get(7));
            s.applyEvent(state, { type: 'call.live', pbx: 'lab', call_id: 'b', state: 'answered' });
            log.push(state.calls.size);
            s.applyEvent(state, { type: 'call.gone', pbx: 'lab', call_id: 'b' });
            log.push(state.calls.size);
            // A new snapshot drops pops that ended meanwhile.
            ({ state, effects } = s.applySnapshot(state, { seq: 9, pops: [] }));
            log.push(effects.filter((e) => e.kind === 'close').map((e) => e.key));
            const callers = [{ wait_since: 100 }, { wait_since: 130 }];
            log.push(s.longestWait({ waiting: 2, callers }, 0, 160));
            log.push(s.longestWait({ waiting: 1, longest_wait: 5 }, 150, 160));
            log.push(s.longestWait({ waiting: 0, longest_wait: 5 }, 150, 160));
            return log;
        }""",
        page.assets,
    )
    assert out[0] == ["ring", "refresh"]
    assert out[1] == ["ring"]
    assert out[2] == ["update"] and out[3] == "answered"
    assert out[4] == ["close"] and out[5] == ["lab/b"]
    assert out[6] == ["queue", "abandoned"]
    assert out[7] == ["agent"]
    assert out[8] == {
        "id": 7,
        "name": "Sara",
        "state": "paused",
        "since": 20,
        "reason": "lunch",
        "queues": [],
    }
    assert out[9:11] == [1, 0]
    assert out[11] == ["lab/b"]
    assert out[12:] == [60, 15, 0]


async def test_the_hub_client_resumes_from_its_last_seq_and_recovers_from_gaps(page):
    out = await page.evaluate(
        """async (prefix) => {
            const { HubClient } = await import(prefix + '/js/ws.js');
            const wait = () => new Promise((r) => setTimeout(r, 20));
            const client = new HubClient({
                token: 'tok', url: 'ws://x/ws', backoff: { min: 10, max: 40 },
            });
            const events = [];
            client.addEventListener('event', (e) => events.push(e.detail.seq));
            client.start();
            await wait();
            const first = window.__sockets[0];
            first.serve({ type: 'welcome', epoch: 'E1', seq: 5, user: {} });
            first.serve({ type: 'snapshot', seq: 5 });
            first.serve({ type: 'pop', seq: 6 });
            first.serve({ type: 'pop', seq: 6 });      // duplicate: dropped
            first.serve({ type: 'pop', seq: 8 });      // gap: reconnect and ask again
            await wait();
            const second = window.__sockets[1];
            second.serve({ type: 'welcome', epoch: 'E1', seq: 8, user: {} });
            second.serve({ type: 'pop', seq: 7 });
            second.serve({ type: 'pop', seq: 8 });
            second.drop(1006);                          // network loss: back off, resume
            await wait(); await wait();
            const third = window.__sockets[2];
            third.serve({ type: 'welcome', epoch: 'E2', seq: 1, user: {} });  // gateway restarted
            third.serve({ type: 'snapshot', seq: 1 });
            third.serve({ type: 'pop', seq: 2 });
            client.stop();
            return {
                hellos: window.__sockets.map((s) => s.sent[0]),
                firstClosedWith: first.closedWith,
                events,
                lastSeq: client.lastSeq,
                epoch: client.epoch,
            };
        }""",
        page.assets,
    )
    assert out["hellos"] == [
        {"type": "hello", "token": "tok", "last_seq": None, "epoch": None},
        {"type": "hello", "token": "tok", "last_seq": 6, "epoch": "E1"},
        {"type": "hello", "token": "tok", "last_seq": 8, "epoch": "E1"},
    ]
    assert out["firstClosedWith"] == 4000
    assert out["events"] == [6, 7, 8, 2]
    assert (out["lastSeq"], out["epoch"]) == (2, "E2")


async def test_the_hub_client_gives_up_only_on_auth_and_retries_fell_behind_at_once(page):
    out = await page.evaluate(
        """async (prefix) => {
            const { HubClient, backoffDelay } = await import(prefix + '/js/ws.js');
            const wait = (ms = 20) => new Promise((r) => setTimeout(r, ms));
            const statuses = [];
            const client = new HubClient({ token: 't', url: 'ws://x/ws', backoff: { min: 5000 } });
            client.addEventListener('status', (e) => {
                const d = e.detail;
                statuses.push([d.status, d.delay ?? null, d.code ?? null]);
            });
            client.start();
            await wait();
            window.__sockets[0].serve({ type: 'welcome', epoch: 'E', seq: 0, user: {} });
            window.__sockets[0].drop(4409, 'client fell behind');
            await wait();
            const afterBehind = window.__sockets.length;
            window.__sockets[1].drop(4401, 'token expired');
            await wait();
            return {
                statuses, afterBehind, total: window.__sockets.length,
                delays: [0, 1, 2, 3, 10].map(
                    (a) => backoffDelay(a, { min: 500, max: 30000, random: () => 0.5 }),
                ),
            };
        }""",
        page.assets,
    )
    assert out["afterBehind"] == 2  # 4409: straight back, no waiting
    assert out["total"] == 2  # 4401: no retry
    assert ["reconnecting", 0, 4409] in out["statuses"]
    assert out["statuses"][-1] == ["fatal", None, 4401]
    assert out["delays"] == [500, 1000, 2000, 4000, 30000]


async def test_the_heartbeat_tolerates_throttled_timers_but_not_a_dead_link(page):
    out = await page.evaluate(
        """async (prefix) => {
            const { HubClient } = await import(prefix + '/js/ws.js');
            const wait = () => new Promise((r) => setTimeout(r, 20));
            const client = new HubClient({
                token: 't', url: 'ws://x/ws', heartbeatMs: 3600000, pongTimeoutMs: 10000,
            });
            client.start();
            await wait();
            const ws = window.__sockets[0];
            ws.serve({ type: 'welcome', epoch: 'E', seq: 0, user: {} });
            const t0 = 1000000;
            client.tick(t0);                     // ping
            ws.serve({ type: 'pong' });          // answered at once (messages are not throttled)
            client.tick(t0 + 60000);             // a hidden tab's timer a minute later: ping again
            const alive = window.__sockets.length === 1 && ws.readyState === 1;
            client.tick(t0 + 65000);             // ping still unanswered but only 5 s old
            const stillAlive = window.__sockets.length === 1;
            client.tick(t0 + 125000);            // unanswered for a minute: the link is dead
            await wait();
            const pings = ws.sent.filter((f) => f.type === 'ping').length;
            client.stop();
            const sockets = window.__sockets.length;
            return { alive, stillAlive, pings, sockets, closed: ws.closedWith };
        }""",
        page.assets,
    )
    assert out["alive"] and out["stillAlive"]
    assert out["pings"] == 2
    assert out["sockets"] == 2 and out["closed"] == 4000
