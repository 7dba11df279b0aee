"""The shipped dialplan and the routing agree on every channel variable and route."""

from __future__ import annotations

import re
from pathlib import Path

from cti.actions import DialPlan
from cti.call_logger import RECORD_VARIABLES as CALL_LOG_VARIABLES
from cti.routing.engine import RECORD_VARIABLES, ROUTE_VARIABLES, ROUTES
from tamas.config import CallRules, Settings

DIALPLAN = Path(__file__).resolve().parents[1] / "asterisk-config" / "extensions_tamas.conf"
# Set by the PBX administrator in [globals], documented at the top of the file.
GLOBALS = {
    "TAMAS_GATEWAY",
    "TAMAS_FALLBACK_QUEUE",
    "TAMAS_TRUNK",
    "TAMAS_INTERNAL_CONTEXT",
}


def _text() -> str:
    return DIALPLAN.read_text(encoding="utf-8")


def _code() -> str:
    """The dialplan without its comments."""
    return "\n".join(line.split(";", 1)[0] for line in _text().splitlines())


def _contexts() -> dict[str, str]:
    out: dict[str, str] = {}
    name = None
    for line in _code().splitlines():
        m = re.match(r"^\[([\w-]+)\]", line)
        if m:
            name = m.group(1)
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return out


def test_every_variable_the_routing_sets_is_used_by_the_dialplan_and_vice_versa():
    used = set(re.findall(r"\$\{(TAMAS_[A-Z_]+)[}:]", _code()))
    produced = set(ROUTE_VARIABLES) | set(RECORD_VARIABLES)
    assert produced - used == set(), "set by the gateway, never used by the dialplan"
    assert used - produced - GLOBALS == set(), "used by the dialplan, never set by anyone"
    header = _text().split("[tamas-inbound]")[0]
    for name in GLOBALS:
        assert f";     {name}=" in header, f"global {name} is not documented"
    for name in produced:
        assert name in header, f"{name} is not documented in the header"


def test_record_variables_are_the_ones_the_call_log_reads_and_are_made_inherited():
    assert set(RECORD_VARIABLES) <= set(CALL_LOG_VARIABLES)
    code = _code()
    for name in RECORD_VARIABLES:
        assert f"Set(__{name}=${{{name}}})" in code


def test_the_dialplan_branches_on_every_route_and_falls_back_otherwise():
    route = _contexts()["tamas-route"]
    branches = re.findall(r'GotoIf\(\$\["\$\{TAMAS_ROUTE\}" = "(\w+)"\]\?(\w+),1\)', route)
    assert sorted(value for value, _ in branches) == sorted(ROUTES)
    targets = {value: target for value, target in branches}
    for target in targets.values():
        assert re.search(rf"^exten => {target},1,", route, re.M), target
    lines = route.splitlines()
    last_branch = max(i for i, line in enumerate(lines) if 'TAMAS_ROUTE}" =' in line)
    assert "Goto(fallback,1)" in lines[last_branch + 1]  # anything else: the fallback
    assert '"${AGISTATUS}" != "SUCCESS"]?fallback,1' in route
    assert re.search(r"^exten => fallback,1,", route, re.M)
    assert "Queue(${IF($[${LEN(${TAMAS_FALLBACK_QUEUE})} > 0]?${TAMAS_FALLBACK_QUEUE}" in route
    # Each route checks that the variables it needs are there before using them.
    for target, needs in (
        ("agent", "TAMAS_ROUTE_DIAL"),
        ("queue", "TAMAS_ROUTE_QUEUE"),
        ("voicemail", "TAMAS_ROUTE_MAILBOX"),
        ("external", "TAMAS_ROUTE_NUMBER"),
    ):
        assert re.search(
            rf"^exten => {target},1,GotoIf\(\$\[\$\{{LEN\(\$\{{{needs}\}}\)\}} = 0\]\?fallback,1\)",
            route,
            re.M,
        ), target


def test_the_inbound_context_records_then_asks_the_gateway_on_the_agi_port():
    contexts = _contexts()
    route = contexts["tamas-route"].splitlines()
    mix = next(i for i, line in enumerate(route) if "MixMonitor(${UNIQUEID}.wav,b)" in line)
    agi = next(i for i, line in enumerate(route) if "AGI(" in line)
    assert mix < agi
    port = Settings.model_fields["agi_port"].default
    assert f"AGI(agi://${{TAMAS_GATEWAY}}:{port}/route,${{DID}})" in route[agi]
    assert "Set(__DID=${EXTEN})" in contexts["tamas-inbound"]  # the call-state machine's DID
    assert any(p.rstrip("*") == "tamas-inbound" for p in CallRules().inbound_contexts)


def test_click_to_call_and_transfer_contexts_exist_where_the_gateway_sends_calls():
    contexts = _contexts()
    plan = DialPlan()
    rules = CallRules()
    for name in {plan.outbound_context, plan.transfer_context, rules.outbound_context,
                 rules.transfer_context}:  # fmt: skip
        assert name in contexts, name
    # click_to_call dials the national form (0912...) or 00 + international.
    assert re.search(r"^exten => _0X\.,1,", contexts[plan.outbound_context], re.M)
    assert "MixMonitor" in contexts[plan.outbound_context]
    assert "PJSIP/${EXTEN}@${TAMAS_TRUNK}" in contexts[plan.transfer_context]
