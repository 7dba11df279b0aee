"""The routing rule engine as a pure function: rules and a call snapshot in, a decision out."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from cti.routing import rules as r
from cti.routing.engine import (
    ROUTE_VARIABLES,
    AgentInfo,
    Calendar,
    CallContext,
    RecordInfo,
    TeamInfo,
    channel_variables,
    compare,
    compile_rules,
    display_name,
    evaluate,
    number_forms,
    stored_reasons,
)

TEHRAN = ZoneInfo("Asia/Tehran")
SATURDAY_10 = dt.datetime(2026, 11, 21, 10, 0, tzinfo=TEHRAN)  # a Saturday morning
FRIDAY_10 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=TEHRAN)

SARA = RecordInfo(
    "contact",
    12,
    "Sara Ahmadi",
    owner_id=1,
    team_id=7,
    account_id=30,
    is_vip=True,
    language="fa",
    fields={"lifecycle_stage": "customer", "satisfaction": 4, "do_not_call": False},
    tags=frozenset({"gold", "tehran"}),
    custom={"national_id": "0012345678", "credit": 2500, "premium": True},
    open_deals=2,
    open_deal_value=Decimal("900000000"),
    open_cases={"high": 1, "normal": 2},
)
LEAD = RecordInfo(
    "lead",
    5,
    "Reza Karimi",
    owner_id=2,
    lead_status="new",
    lead_rating="hot",
    lead_list_id=3,
    language="en",
    fields={"source": "web", "company": "Pars Co"},
)
AGENTS = {
    1: AgentInfo(1, "Agent One", ("PJSIP/1001", "PJSIP/1001-mobile"), "available", frozenset({7})),
    2: AgentInfo(2, "Agent Two", ("PJSIP/1002",), "on_call", frozenset({7})),
    3: AgentInfo(3, "Agent Three", (), "available", frozenset()),
}
TEAMS = {7: TeamInfo(7, "Sales", "sales", frozenset({1, 2})), 8: TeamInfo(8, "Empty", None)}
OFFICE = Calendar.from_stored(
    1,
    "Office",
    {
        "sat": [["08:00", "17:00"]],
        "sun": [["08:00", "17:00"]],
        "thu": [["08:00", "13:00"]],
        "fri": [],
        "mon": [["22:00", "02:00"]],
    },
    [{"date": "2026-11-22", "name": "Test holiday"}],
)


def make_ctx(**changes: Any) -> CallContext:
    caller = changes.pop("caller", "09351112233")
    did = changes.pop("did", "02188776655")
    base = CallContext(
        caller=caller,
        caller_e164=None,
        caller_forms=tuple(number_forms(caller, "IR")),
        did=did,
        did_forms=number_forms(did, "IR"),
        now=SATURDAY_10,
        region="IR",
        default_queue="general",
        record=SARA,
        agents=AGENTS,
        teams=TEAMS,
        calendars={1: OFFICE},
    )
    return dataclasses.replace(base, **changes)


def rules(*specs: tuple[list[dict[str, Any]], dict[str, Any]], match: str = "all") -> list:
    rows = [
        {"id": i, "name": f"rule {i}", "version": 1, "match": match, "conditions": c, "action": a}
        for i, (c, a) in enumerate(specs, start=1)
    ]
    return compile_rules(rows, "IR")


QUEUE_VIP: dict[str, Any] = {"type": "queue", "queue": "vip", "priority": 9}


def decides(condition: dict[str, Any], ctx: CallContext) -> bool:
    """True when a rule with only ``condition`` decides the call."""
    d = evaluate(rules(([condition], QUEUE_VIP)), ctx)
    explained = evaluate(rules(([condition], QUEUE_VIP)), ctx, explain=True)
    assert (d.rule_id == 1) == (explained.rule_id == 1)  # both paths agree
    return d.rule_id == 1


# -- each condition kind -----------------------------------------------------------------------

CONDITION_CASES: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    # (condition, context changes, expected)
    ({"kind": "unknown_caller"}, {}, False),
    ({"kind": "unknown_caller"}, {"record": None}, True),
    ({"kind": "record_type", "types": ["contact"]}, {}, True),
    ({"kind": "record_type", "types": ["lead", "account"]}, {}, False),
    ({"kind": "owner", "user_ids": [1]}, {}, True),
    ({"kind": "owner", "user_ids": [2]}, {}, False),
    ({"kind": "owner", "team_ids": [7]}, {}, True),
    ({"kind": "owner"}, {"record": dataclasses.replace(SARA, owner_id=None)}, False),
    ({"kind": "owner"}, {}, True),
    ({"kind": "tag", "tags": ["GOLD", "silver"]}, {}, True),
    ({"kind": "tag", "tags": ["gold", "silver"], "match": "all"}, {}, False),
    ({"kind": "tag", "tags": ["gold", "tehran"], "match": "all"}, {}, True),
    ({"kind": "lead_status", "statuses": ["new"]}, {"record": LEAD}, True),
    ({"kind": "lead_status", "statuses": ["qualified"]}, {"record": LEAD}, False),
    ({"kind": "lead_status", "statuses": ["new"]}, {}, False),
    ({"kind": "lead_list", "lead_list_ids": [3, 4]}, {"record": LEAD}, True),
    ({"kind": "lead_list", "lead_list_ids": [4]}, {"record": LEAD}, False),
    ({"kind": "lead_rating", "ratings": ["Hot"]}, {"record": LEAD}, True),
    ({"kind": "lead_rating", "ratings": ["cold"]}, {"record": LEAD}, False),
    ({"kind": "open_deals"}, {}, True),
    ({"kind": "open_deals", "min_count": 3}, {}, False),
    ({"kind": "open_deals", "min_value": "500000000"}, {}, True),
    ({"kind": "open_deals", "min_value": "1000000000"}, {}, False),
    ({"kind": "open_deals"}, {"record": LEAD}, False),
    ({"kind": "open_cases", "min_count": 3}, {}, True),
    ({"kind": "open_cases", "priorities": ["high", "urgent"]}, {}, True),
    ({"kind": "open_cases", "priorities": ["urgent"]}, {}, False),
    ({"kind": "custom_field", "key": "credit", "op": "gte", "value": 2000}, {}, True),
    ({"kind": "custom_field", "key": "credit", "op": "lt", "value": "2000"}, {}, False),
    ({"kind": "custom_field", "key": "premium", "value": True}, {}, True),
    ({"kind": "custom_field", "key": "premium", "value": "false"}, {}, False),
    ({"kind": "custom_field", "key": "national_id", "op": "in", "value": ["0012345678"]}, {}, True),
    ({"kind": "custom_field", "key": "missing", "op": "set"}, {}, False),
    ({"kind": "custom_field", "key": "national_id", "op": "contains", "value": "2345"}, {}, True),
    ({"kind": "field", "field": "lifecycle_stage", "value": "Customer"}, {}, True),
    ({"kind": "field", "field": "satisfaction", "op": "gt", "value": 4}, {}, False),
    ({"kind": "field", "field": "source", "op": "ne", "value": "web"}, {"record": LEAD}, False),
    ({"kind": "language", "languages": ["fa"]}, {}, True),
    ({"kind": "language", "languages": ["fa"]}, {"record": LEAD}, False),
    ({"kind": "vip"}, {}, True),
    ({"kind": "vip"}, {"record": LEAD}, False),
    ({"kind": "did", "dids": ["+982188776655"]}, {}, True),
    ({"kind": "did", "dids": ["021 8877 6655"]}, {"did": "+982188776655"}, True),
    ({"kind": "did", "dids": ["02188776600"]}, {}, False),
    ({"kind": "did", "dids": ["8877"]}, {"did": "8877"}, True),
    ({"kind": "caller_number", "patterns": ["0935*"]}, {}, True),
    ({"kind": "caller_number", "patterns": ["+98935*"]}, {}, True),
    ({"kind": "caller_number", "patterns": ["+98912*"]}, {}, False),
    ({"kind": "caller_number", "patterns": ["093511122??"]}, {"caller": "+989351112233"}, True),
    ({"kind": "caller_number", "patterns": ["*"]}, {"caller": ""}, False),
    ({"kind": "time", "start": "08:00", "end": "12:00"}, {}, True),
    ({"kind": "time", "start": "08:00", "end": "10:00"}, {}, False),
    ({"kind": "time", "weekdays": ["fri"], "start": "08:00", "end": "12:00"}, {}, False),
    ({"kind": "time", "start": "22:00", "end": "06:00"}, {}, False),
    (
        {"kind": "time", "start": "22:00", "end": "06:00"},
        {"now": dt.datetime(2026, 11, 21, 23, 30, tzinfo=TEHRAN)},
        True,
    ),
    ({"kind": "business_hours", "calendar_id": 1}, {}, True),
    ({"kind": "business_hours", "calendar_id": 1}, {"now": FRIDAY_10}, False),
    (
        {"kind": "business_hours", "calendar_id": 1},
        {"now": dt.datetime(2026, 11, 21, 17, 0, tzinfo=TEHRAN)},
        False,
    ),
    (
        {"kind": "business_hours", "calendar_id": 1},
        {"now": dt.datetime(2026, 11, 23, 23, 0, tzinfo=TEHRAN)},  # Monday night shift
        True,
    ),
    (  # a holiday on a working weekday
        {"kind": "business_hours", "calendar_id": 1},
        {"now": dt.datetime(2026, 11, 22, 10, 0, tzinfo=TEHRAN)},
        False,
    ),
    ({"kind": "business_hours", "calendar_id": 99}, {}, False),
    ({"kind": "holiday", "calendar_id": 1}, {}, False),
    (
        {"kind": "holiday", "calendar_id": 1},
        {"now": dt.datetime(2026, 11, 22, 10, 0, tzinfo=TEHRAN)},
        True,
    ),
    ({"kind": "agent_available", "owner": True}, {}, True),
    ({"kind": "agent_available", "owner": True}, {"record": LEAD}, False),
    ({"kind": "agent_available", "user_ids": [2, 3]}, {}, False),  # 3 has no phone
    ({"kind": "agent_available", "team_id": 7}, {}, True),
    ({"kind": "agent_available", "team_id": 7, "min_available": 2}, {}, False),
]


@pytest.mark.parametrize(
    ("condition", "changes", "expected"),
    CONDITION_CASES,
    ids=[f"{c['kind']}-{i}" for i, (c, _, _) in enumerate(CONDITION_CASES)],
)
def test_each_condition_kind_matches_exactly_when_its_facts_hold(condition, changes, expected):
    ctx = make_ctx(**changes)
    assert decides(condition, ctx) is expected
    assert decides({**condition, "negate": True}, ctx) is (not expected)


def test_every_condition_kind_is_covered_by_the_cases():
    covered = {c["kind"] for c, _, _ in CONDITION_CASES}
    kinds = {
        m.model_fields["kind"].annotation.__args__[0]  # Literal["..."]
        for m in r.Condition.__origin__.__args__  # type: ignore[attr-defined]
    }
    assert covered == kinds


def test_rule_conditions_all_or_any():
    both: list[dict[str, Any]] = [{"kind": "vip"}, {"kind": "language", "languages": ["en"]}]
    assert evaluate(rules((both, QUEUE_VIP)), make_ctx()).rule_id is None
    assert evaluate(rules((both, QUEUE_VIP), match="any"), make_ctx()).rule_id == 1
    assert evaluate(rules(([], QUEUE_VIP)), make_ctx()).rule_id == 1  # no conditions: always


# -- each action kind ---------------------------------------------------------------------------


def test_owner_action_rings_every_device_of_the_owner_then_a_queue():
    d = evaluate(rules(([], {"type": "owner", "ring_seconds": 25})), make_ctx())
    assert d.route.route == "agent"
    assert d.route.dial == "PJSIP/1001&PJSIP/1001-mobile"
    assert d.route.timeout == 25 and d.route.queue == "general" and d.route.agent_id == 1
    assert d.caller_name == "Sara Ahmadi"
    d = evaluate(rules(([], {"type": "owner", "no_answer_queue": "vip"})), make_ctx())
    assert d.route.queue == "vip"


def test_owner_unavailable_or_unknown_falls_through_to_the_next_rule():
    table = rules(([], {"type": "owner"}), ([], {"type": "queue", "queue": "sales"}))
    busy = make_ctx(record=LEAD)  # owner 2 is on a call
    d = evaluate(table, busy)
    assert d.route.route == "queue" and d.rule_id == 2
    assert d.reasons[0].matched is False and "Agent Two is on_call" in d.reasons[0].why
    no_phone = make_ctx(record=dataclasses.replace(SARA, owner_id=3))
    assert "has no device" in evaluate(table, no_phone).reasons[0].why
    gone = make_ctx(record=dataclasses.replace(SARA, owner_id=42))
    assert "not an active user" in evaluate(table, gone).reasons[0].why
    inactive = {**AGENTS, 1: dataclasses.replace(AGENTS[1], active=False)}
    assert evaluate(table, make_ctx(agents=inactive)).rule_id == 2
    assert evaluate(table, make_ctx(record=None)).rule_id == 2


def test_lead_caps_per_agent_per_hour_and_day():
    table = rules(
        ([], {"type": "owner", "max_per_hour": 3, "max_per_day": 10}),
        ([], {"type": "team_queue", "team_id": 7}),
    )
    assert evaluate(table, make_ctx(caps={1: (2, 9)})).route.route == "agent"
    hour = evaluate(table, make_ctx(caps={1: (3, 3)}))
    assert hour.route.queue == "sales" and "cap 3" in hour.reasons[0].why
    day = evaluate(table, make_ctx(caps={1: (0, 10)}))
    assert day.rule_id == 2 and "cap 10" in day.reasons[0].why


def test_queue_team_queue_voicemail_external_and_reject_actions():
    ctx = make_ctx()
    q = evaluate(rules(([], {"type": "queue", "queue": "vip", "priority": 9})), ctx)
    assert (q.route.route, q.route.queue, q.route.priority) == ("queue", "vip", 9)
    t = evaluate(rules(([], {"type": "team_queue", "team_id": 7, "priority": 2})), ctx)
    assert (t.route.route, t.route.queue, t.route.priority) == ("queue", "sales", 2)
    no_queue = evaluate(rules(([], {"type": "team_queue", "team_id": 8})), ctx)
    assert no_queue.rule_id is None and "has no queue" in no_queue.reasons[0].why
    v = evaluate(rules(([], {"type": "voicemail", "mailbox": "1001@default"})), ctx)
    assert (v.route.route, v.route.mailbox) == ("voicemail", "1001@default")
    e = evaluate(rules(([], {"type": "external", "number": "+989121234567"})), ctx)
    assert (e.route.route, e.route.number, e.route.timeout) == ("external", "09121234567", 30)
    abroad = evaluate(rules(([], {"type": "external", "number": "+442071838750"})), ctx)
    assert abroad.route.number == "00442071838750"
    x = evaluate(rules(([], {"type": "reject", "cause": 17})), ctx)
    assert (x.route.route, x.route.cause) == ("hangup", 17)


def test_no_rule_deciding_gives_the_default_queue_with_every_reason():
    table = rules(
        ([{"kind": "did", "dids": ["02100000000"]}], QUEUE_VIP),
        ([{"kind": "unknown_caller"}], QUEUE_VIP),
    )
    d = evaluate(table, make_ctx())
    assert (d.route.route, d.route.queue, d.rule_id, d.rule_label) == (
        "queue",
        "general",
        None,
        "default",
    )
    assert [x.rule_id for x in d.reasons] == [1, 2, None]
    assert stored_reasons(d)[0]["why"] == "missed: #1 did; #2 unknown_caller"


def test_dry_run_explains_each_condition_with_the_facts():
    table = rules(
        (
            [
                {"kind": "vip"},
                {"kind": "business_hours", "calendar_id": 1},
                {"kind": "tag", "tags": ["silver"]},
            ],
            QUEUE_VIP,
        ),
        ([{"kind": "holiday", "calendar_id": 1}], {"type": "voicemail", "mailbox": "100"}),
    )
    d = evaluate(table, make_ctx(now=FRIDAY_10), explain=True)
    first = d.reasons[0].why
    assert "vip yes: contact 12 is VIP" in first
    assert "business_hours no: fri 2026-11-20 10:00: calendar 'Office' hours today closed" in first
    assert "tag no: tags [gold, tehran], wanted any of [silver]" in first
    holiday = evaluate(
        table, make_ctx(now=dt.datetime(2026, 11, 22, 9, tzinfo=TEHRAN)), explain=True
    )
    assert holiday.rule_id == 2 and "holiday Test holiday" in holiday.reasons[1].why


# -- the variables contract -----------------------------------------------------------------------


def test_channel_variables_set_the_route_last_and_leave_out_empty_ones():
    d = evaluate(rules(([], {"type": "owner"})), make_ctx())
    variables = channel_variables(d)
    assert variables == [
        ("TAMAS_CALLER_NAME", "Sara Ahmadi"),
        ("TAMAS_CONTACT_ID", "12"),
        ("TAMAS_ACCOUNT_ID", "30"),
        ("TAMAS_ROUTE_DIAL", "PJSIP/1001&PJSIP/1001-mobile"),
        ("TAMAS_ROUTE_TIMEOUT", "20"),
        ("TAMAS_ROUTE_QUEUE", "general"),
        ("TAMAS_ROUTE_RULE", "1"),
        ("TAMAS_ROUTE", "agent"),
    ]
    lead = channel_variables(evaluate(rules(([], QUEUE_VIP)), make_ctx(record=LEAD)))
    assert ("TAMAS_LEAD_ID", "5") in lead and ("TAMAS_ROUTE_PRIORITY", "9") in lead
    unknown = channel_variables(evaluate([], make_ctx(record=None)))
    assert unknown == [
        ("TAMAS_ROUTE_QUEUE", "general"),
        ("TAMAS_ROUTE_RULE", "default"),
        ("TAMAS_ROUTE", "queue"),
    ]
    assert {n for n, _ in variables + lead} - {"TAMAS_CONTACT_ID", "TAMAS_ACCOUNT_ID",
                                              "TAMAS_LEAD_ID"} <= set(ROUTE_VARIABLES)  # fmt: skip


def test_caller_names_are_made_safe_for_the_phone_display():
    assert display_name('Ali "the boss"\\\n Rezaei') == "Ali the boss Rezaei"
    assert display_name("سارا   احمدی") == "سارا احمدی"
    assert display_name("x" * 200) == "x" * 80
    assert display_name("  ") is None and display_name(None) is None


def test_comparisons_read_numbers_as_numbers_and_text_case_insensitively():
    assert compare("10", "gt", 9) and not compare("10", "gt", "9a")
    assert compare("Tehran", "eq", "tehran") and compare(None, "eq", None)
    assert compare(True, "eq", "yes") and not compare(None, "gt", 1)
    assert compare("abc", "ne", "abd") and compare(2, "in", ["1", "2"])


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "nope"},
        {"kind": "tag", "tags": []},
        {"kind": "time", "start": "25:00", "end": "10:00"},
        {"kind": "time", "start": "10:00", "end": "10:00"},
        {"kind": "custom_field", "key": "x", "op": "in", "value": "a"},
        {"kind": "custom_field", "key": "x", "op": "gt"},
        {"kind": "caller_number", "patterns": ["09[12]*"]},
        {"kind": "agent_available"},
        {"kind": "vip", "extra": 1},
    ],
)
def test_bad_conditions_are_refused(bad):
    with pytest.raises(ValidationError):
        r.CONDITIONS.validate_python([bad])


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "queue", "queue": "sales,t"},
        {"type": "queue", "queue": "sales", "priority": -1},
        {"type": "voicemail", "mailbox": "1001@x y"},
        {"type": "owner", "max_per_hour": 0},
        {"type": "reject", "cause": 500},
        {"type": "teleport"},
    ],
)
def test_bad_actions_are_refused(bad):
    with pytest.raises(ValidationError):
        r.ACTION.validate_python(bad)


def test_calendar_holidays_take_gregorian_or_jalali_dates():
    cal = r.CalendarIn(
        name="Iran",
        holidays=[
            {"date": "1405-01-01", "name": "Nowruz"},
            {"date": "۱۴۰۵-۰۹-۰۱", "name": "Persian digits"},
            {"date": "2026-12-25", "name": "Gregorian"},
        ],
    ).stored()
    assert [h["date"] for h in cal["holidays"]] == ["2026-03-21", "2026-11-22", "2026-12-25"]
    assert cal["holidays"][0]["jalali"] == "1405-01-01"
    assert cal["hours"]["fri"] == [] and cal["hours"]["sat"] == [["08:00", "17:00"]]
    with pytest.raises(ValidationError):
        r.CalendarIn(name="x", holidays=[{"date": "1405-13-01"}])
    with pytest.raises(ValidationError):
        r.CalendarIn(name="x", hours={"sat": ["9-17"]})
