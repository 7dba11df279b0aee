"""Automation decisions without a database: inactivity, caps and round robin, stage entry
and exit, reminders due, and rule configs validated before they are saved."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm.automation import decisions as dec
from crm.automation.rules import normalized, parse_config
from crm.errors import ValidationFailed

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)


def days_ago(n: float) -> dt.datetime:
    return NOW - dt.timedelta(days=n)


# -- inactivity ---------------------------------------------------------------------------------


def test_a_customer_is_inactive_after_n_days_without_any_activity():
    assert dec.inactive(days_ago(31), days_ago(400), NOW, 30)
    assert not dec.inactive(days_ago(29), days_ago(400), NOW, 30)


def test_a_customer_without_activities_counts_from_when_it_was_created():
    assert not dec.inactive(None, days_ago(10), NOW, 30)
    assert dec.inactive(None, days_ago(30), NOW, 30)


def test_only_active_customers_are_flagged_and_never_twice():
    assert dec.flag_stage("customer", ["customer"], "former")
    assert not dec.flag_stage("lead", ["customer"], "former")
    assert not dec.flag_stage("former", [], "former")
    assert dec.flag_stage(None, [], "former")


# -- choosing people ------------------------------------------------------------------------------


def test_round_robin_continues_where_it_left_and_skips_users_at_their_cap():
    pick = dec.pick_user([1, 2, 3], position=1)
    assert pick == dec.Pick(2, 2)
    pick = dec.pick_user([1, 2, 3], position=2, last_hour={3: 5}, cap_per_hour=5)
    assert pick == dec.Pick(1, 1)


def test_nobody_is_picked_when_everyone_is_at_a_cap():
    pick = dec.pick_user([1, 2], last_day={1: 10, 2: 10}, cap_per_day=10, position=1)
    assert pick == dec.Pick(None, 1)


def test_least_loaded_takes_the_user_with_fewest_open_records_first_in_order_on_ties():
    assert dec.pick_user([4, 5, 6], strategy="least_loaded", loads={4: 3, 5: 1, 6: 1}).user_id == 5


def test_a_user_who_returned_the_lead_never_gets_it_back():
    assert dec.pick_user([1, 2], exclude=[1]).user_id == 2
    assert dec.pick_user([1], exclude=[1]).user_id is None


@given(
    st.lists(st.integers(1, 9), min_size=1, max_size=6, unique=True),
    st.integers(0, 30),
    st.integers(1, 4),
)
def test_round_robin_with_caps_never_exceeds_a_cap_and_shares_evenly(users, leads, cap):
    counts: dict[int, int] = {}
    position = 0
    for _ in range(leads):
        pick = dec.pick_user(users, position=position, last_hour=counts, cap_per_hour=cap)
        if pick.user_id is None:
            assert all(counts.get(u, 0) >= cap for u in users)
            continue
        counts[pick.user_id] = counts.get(pick.user_id, 0) + 1
        position = pick.position
    assert all(n <= cap for n in counts.values())
    assert max(counts.values(), default=0) - min(counts.get(u, 0) for u in users) <= 1


def test_reassignment_spreads_round_robin_and_says_where_to_continue():
    plan, position = dec.spread([("contact", 1), ("deal", 2), ("task", 3)], [7, 8], 1)
    assert plan == [("contact", 1, 8), ("deal", 2, 7), ("task", 3, 8)]
    assert position == 0
    assert dec.spread([("contact", 1)], [], 0) == ([], 0)


# -- stages ------------------------------------------------------------------------------------


def test_a_stage_change_is_read_from_the_audit_diff():
    assert dec.stage_change({"stage_id": [3, 4]}, "stage_id") == (3, 4)
    assert dec.stage_change({"stage_id": [None, 4]}, "stage_id") == (None, 4)
    assert dec.stage_change({"title": ["a", "b"]}, "stage_id") is None


@pytest.mark.parametrize(
    ("on", "old", "new", "fires"),
    [
        ("enter", "Qualify", "Proposal", True),
        ("enter", None, "proposal", True),  # a new record enters its first stage
        ("enter", "Proposal", "Proposal", False),
        ("enter", "Proposal", "Won", False),
        ("exit", "Proposal", "Won", True),
        ("exit", "Qualify", "Won", False),
    ],
)
def test_entry_and_exit_of_a_stage(on, old, new, fires):
    assert dec.stage_fires(on, "Proposal", old, new) is fires


# -- reminders ----------------------------------------------------------------------------------


def test_reminders_are_due_shortly_before_the_time_and_a_while_after_it():
    items = [
        dec.Due(1, 7, NOW + dt.timedelta(minutes=10), "task"),  # within 15 minutes
        dec.Due(2, 7, NOW + dt.timedelta(minutes=20), "task"),  # not yet
        dec.Due(3, 7, NOW - dt.timedelta(minutes=30), "task"),  # overdue, within the grace
        dec.Due(4, 7, NOW - dt.timedelta(hours=3), "task"),  # long gone
        dec.Due(5, 8, NOW + dt.timedelta(minutes=25), "meeting"),  # meetings: 30 before
    ]
    due = dec.reminders_due(items, NOW, {"task": 15, "meeting": 30}, 60)
    assert [d.activity_id for d in due] == [3, 1, 5]


def test_a_reminder_is_sent_once_per_due_time():
    item = dec.Due(1, 7, NOW + dt.timedelta(minutes=5), "task")
    sent = [(1, 7, item.at)]
    assert dec.reminders_due([item], NOW, {"task": 15}, 60, sent) == []
    moved = dec.Due(1, 7, NOW + dt.timedelta(minutes=6), "task")
    assert dec.reminders_due([moved], NOW, {"task": 15}, 60, sent) == [moved]


# -- configs --------------------------------------------------------------------------------------


def test_configs_get_their_defaults_filled_in():
    cfg = normalized("inactive_customer", {"days": 180})
    assert cfg["set_stage"] == "former" and cfg["stages"] == ["customer"]
    assert cfg["every_minutes"] == 1440
    assert normalized("reminders", {})["task_minutes_before"] == 15


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("inactive_customer", {}, "config.days"),
        ("inactive_customer", {"days": 0}, "config.days"),
        ("stale_prospect", {"days": 90, "owner": 3}, "config.owner"),
        ("lead_assignment", {"cap_per_hour": 3}, "config"),
        ("stage_action", {"entity": "deal", "stage": "Won", "actions": []}, "config.actions"),
        (
            "stage_action",
            {"entity": "deal", "stage": "Won", "actions": [{"type": "assign"}]},
            "config.actions.0.assign",
        ),
        (
            "stage_action",
            {"entity": "deal", "stage": "Won", "actions": [{"type": "fax"}]},
            "config.actions.0",
        ),
    ],
)
def test_bad_configs_are_refused_naming_the_field(kind, config, field):
    with pytest.raises(ValidationFailed) as err:
        parse_config(kind, config)
    assert err.value.errors[0]["field"] == field
