"""The dialer's pure core: calling hours in the customer's time zone, what a call's end
means for the customer's entry, and pacing (never more calls than free agents)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.dialer import pacing
from cti.dialer import policy as pol
from cti.dialer.window import (
    WindowError,
    customer_window,
    parse_days,
    parse_hours,
    try_parse_hours,
)

UTC = dt.UTC


def t(h: int, m: int = 0) -> dt.time:
    return dt.time(h, m)


# -- calling hours --------------------------------------------------------------------------


def test_calling_hours_read_ranges_persian_digits_and_ranges_across_midnight():
    assert parse_hours("09:00-12:00, 16-20") == [(t(9), t(12)), (t(16), t(20))]
    assert parse_hours("۰۹:۳۰-۱۲:۰۰") == [(t(9, 30), t(12))]
    assert parse_hours("22:00-02:00") == [(t(0), t(2)), (t(22), dt.time.max)]
    assert parse_hours("00:00-24:00") == [(t(0), dt.time.max)]


@pytest.mark.parametrize("bad", ["", "9-9", "25:00-26:00", "morning", "10:00"])
def test_unreadable_calling_hours_are_refused(bad):
    with pytest.raises(WindowError):
        parse_hours(bad)


def test_a_free_text_best_time_that_cannot_be_read_does_not_restrict_calls():
    assert try_parse_hours("evenings please") is None
    assert try_parse_hours(None) is None
    assert try_parse_hours("18:00-20:00") == [(t(18), t(20))]


def test_weekdays_by_number_or_name_and_empty_means_every_day():
    assert parse_days(["sat", "sun", 0]) == (0, 5, 6)
    assert parse_days([]) == (0, 1, 2, 3, 4, 5, 6)
    with pytest.raises(WindowError):
        parse_days([9])


def test_hours_are_the_customers_local_hours():
    hours = parse_hours("09:00-17:00")
    tehran = customer_window(hours, parse_days([]), "Asia/Tehran", None, None)
    dubai = customer_window(hours, parse_days([]), "Asia/Tehran", None, "Asia/Dubai")
    at = dt.datetime(2026, 5, 4, 5, 10, tzinfo=UTC)  # Tehran (+03:30) 08:40, Dubai (+04) 09:10
    assert not tehran.open_at(at)
    assert dubai.open_at(at)
    assert tehran.next_open(at) == dt.datetime(2026, 5, 4, 5, 30, tzinfo=UTC)


def test_the_best_time_to_call_narrows_the_campaign_hours():
    w = customer_window(
        parse_hours("09:00-20:00"), (0, 1, 2, 3, 4, 5, 6), "UTC", "18:00-22:00", None
    )
    assert w.ranges == ((t(18), t(20)),)
    assert not w.open_at(dt.datetime(2026, 5, 4, 12, tzinfo=UTC))
    assert w.open_at(dt.datetime(2026, 5, 4, 19, tzinfo=UTC))
    assert w.next_open(dt.datetime(2026, 5, 4, 20, 30, tzinfo=UTC)) == dt.datetime(
        2026, 5, 5, 18, tzinfo=UTC
    )


def test_days_off_are_skipped_to_the_next_calling_day():
    # Friday 2026-05-08 is not a calling day (Saturday to Thursday).
    w = customer_window(
        parse_hours("09:00-17:00"),
        parse_days(["sat", "sun", "mon", "tue", "wed", "thu"]),
        "UTC",
        None,
        None,
    )
    thursday_evening = dt.datetime(2026, 5, 7, 18, tzinfo=UTC)
    assert w.next_open(thursday_evening) == dt.datetime(2026, 5, 9, 9, tzinfo=UTC)
    assert not w.open_at(dt.datetime(2026, 5, 8, 10, tzinfo=UTC))


def test_a_best_time_outside_the_campaign_hours_never_opens():
    w = customer_window(
        parse_hours("09:00-12:00"), (0, 1, 2, 3, 4, 5, 6), "UTC", "20:00-21:00", None
    )
    assert w.next_open(dt.datetime(2026, 5, 4, 8, tzinfo=UTC)) is None


def test_an_unknown_customer_time_zone_falls_back_to_the_campaigns():
    w = customer_window(parse_hours("09:00-17:00"), (0,), "Asia/Tehran", None, "Mars/Olympus")
    assert str(w.tz) == "Asia/Tehran"


def test_daylight_saving_jumps_keep_the_local_opening_time():
    w = customer_window(parse_hours("09:00-17:00"), parse_days([]), "Europe/Berlin", None, None)
    # Berlin moves from +01:00 to +02:00 on 2026-03-29.
    before = w.next_open(dt.datetime(2026, 3, 28, 18, tzinfo=UTC))
    after = w.next_open(dt.datetime(2026, 3, 29, 18, tzinfo=UTC))
    assert before == dt.datetime(2026, 3, 29, 7, tzinfo=UTC)
    assert after == dt.datetime(2026, 3, 30, 7, tzinfo=UTC)


# -- results and retries ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answered", "cause", "agent_took", "expected"),
    [
        (True, 16, True, pol.ANSWERED),
        (False, 17, True, pol.BUSY),
        (False, 21, True, pol.BUSY),
        (False, 19, True, pol.NO_ANSWER),
        (False, 16, True, pol.NO_ANSWER),
        (False, 34, True, pol.FAILED),
        (False, 1, True, pol.FAILED),
        (False, 17, False, pol.AGENT_NO_ANSWER),
    ],
)
def test_how_a_call_ended_is_one_result(answered, cause, agent_took, expected):
    assert pol.classify(answered, cause, agent_took) == expected


def test_busy_and_unanswered_calls_are_retried_after_their_delay_until_attempts_run_out():
    policy = pol.Policy(max_attempts=3, retry_minutes={pol.BUSY: 5, pol.NO_ANSWER: 30})
    now = dt.datetime(2026, 5, 4, 10, tzinfo=UTC)
    first = pol.after_call(0, pol.BUSY, policy, now)
    assert (first.state, first.attempts) == ("pending", 1)
    assert first.next_attempt_at == now + dt.timedelta(minutes=5)
    second = pol.after_call(1, pol.NO_ANSWER, policy, now)
    assert second.next_attempt_at == now + dt.timedelta(minutes=30)
    last = pol.after_call(2, pol.BUSY, policy, now)
    assert (last.state, last.attempts, last.next_attempt_at) == ("exhausted", 3, None)


def test_an_agent_who_did_not_pick_up_costs_the_customer_no_attempt():
    policy = pol.Policy(max_attempts=1)
    now = dt.datetime(2026, 5, 4, 10, tzinfo=UTC)
    step = pol.after_call(0, pol.AGENT_NO_ANSWER, policy, now)
    assert (step.state, step.attempts) == ("pending", 0)
    assert step.next_attempt_at is not None and step.next_attempt_at > now


def test_an_answered_call_waits_for_the_agents_disposition():
    step = pol.after_call(0, pol.ANSWERED, pol.Policy(), dt.datetime(2026, 5, 4, tzinfo=UTC))
    assert (step.state, step.attempts) == ("wrapup", 1)


def test_dispositions_close_call_back_retry_or_mark_do_not_call():
    now = dt.datetime(2026, 5, 4, 10, tzinfo=UTC)
    codes = pol.DEFAULT_DISPOSITIONS
    policy = pol.Policy(max_attempts=3)
    done = pol.after_disposition(pol.find_disposition(codes, "sale"), 1, policy, now)
    assert done.state == "done" and not done.set_do_not_call
    dnc = pol.after_disposition(pol.find_disposition(codes, "do_not_call"), 1, policy, now)
    assert dnc.state == "excluded" and dnc.set_do_not_call
    later = now + dt.timedelta(hours=2)
    back = pol.after_disposition(pol.find_disposition(codes, "callback"), 1, policy, now, later)
    assert (back.state, back.next_attempt_at, back.callback) == ("pending", later, True)
    retry = pol.after_disposition(pol.find_disposition(codes, "no_decision"), 1, policy, now)
    assert retry.state == "pending"
    assert retry.next_attempt_at is not None and retry.next_attempt_at > now
    spent = pol.after_disposition(pol.find_disposition(codes, "no_decision"), 3, policy, now)
    assert spent.state == "exhausted"


def test_a_callback_needs_a_time_in_the_future_and_codes_must_be_the_campaigns():
    now = dt.datetime(2026, 5, 4, 10, tzinfo=UTC)
    callback = pol.find_disposition(pol.DEFAULT_DISPOSITIONS, "callback")
    with pytest.raises(pol.DispositionError):
        pol.after_disposition(callback, 1, pol.Policy(), now)
    with pytest.raises(pol.DispositionError):
        pol.after_disposition(callback, 1, pol.Policy(), now, now - dt.timedelta(minutes=1))
    with pytest.raises(pol.DispositionError, match="not a disposition"):
        pol.find_disposition(pol.DEFAULT_DISPOSITIONS, "teleport")


# -- pacing ---------------------------------------------------------------------------------------

agents_st = st.lists(st.integers(1, 12), max_size=12)
candidates_st = st.lists(
    st.builds(
        pacing.Candidate,
        st.integers(1, 60),
        st.one_of(st.none(), st.integers(1, 12)),
    ),
    max_size=40,
    unique_by=lambda c: c.entry_id,
)


@settings(max_examples=400, deadline=None)
@given(available=agents_st, busy=st.sets(st.integers(1, 12)), candidates=candidates_st)
def test_pacing_never_places_more_calls_than_free_agents(available, busy, candidates):
    free = pacing.free_agents(available, busy)
    pairs = pacing.plan(free, candidates)
    agents = [a for a, _ in pairs]
    entries = [e for _, e in pairs]
    assert len(pairs) <= len(set(available) - busy)
    assert set(agents) <= set(available) - busy  # only available agents, never a busy one
    assert len(agents) == len(set(agents))  # one call per agent
    assert len(entries) == len(set(entries))  # one call per customer


@settings(max_examples=400, deadline=None)
@given(agents=agents_st, candidates=candidates_st)
def test_promised_callbacks_go_only_to_their_agent_and_nobody_free_is_left_idle(agents, candidates):
    free = list(dict.fromkeys(agents))
    pairs = pacing.plan(free, candidates)
    by_entry = {c.entry_id: c for c in candidates}
    for agent, entry in pairs:
        promised = by_entry[entry].callback_agent_id
        assert promised is None or promised == agent
    used_agents = {a for a, _ in pairs}
    used_entries = {e for _, e in pairs}
    idle = [a for a in free if a not in used_agents]
    waiting = [
        c
        for c in candidates
        if c.entry_id not in used_entries and c.callback_agent_id in (None, *idle)
    ]
    # Maximal: an idle agent and a customer they could take never both remain.
    assert not (idle and waiting)


def test_a_callback_goes_first_to_its_agent_before_older_customers():
    pairs = pacing.plan(
        [1, 2], [pacing.Candidate(10), pacing.Candidate(11), pacing.Candidate(12, 2)]
    )
    assert pairs == [(2, 12), (1, 10)]


@given(st.integers(-5, 50), st.integers(-5, 50))
def test_calls_allowed_is_never_negative(available, in_progress):
    assert pacing.calls_allowed(available, in_progress) >= 0
