"""The shipped Asterisk configuration hangs together: every name one file uses is defined in
the file that owns it (contexts, endpoints, AORs, auths, queues, mailboxes), and the names
the gateway uses are the ones the PBX has. The routing variables are checked against the
dialplan by tests/test_routing_dialplan.py; the event filters by tests/test_eventfilter.py."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from cti.actions import DialPlan
from tamas.config import CallRules, Settings
from tests.asterisk_conf import ConfFile, Section, parse, parse_file
from tests.test_routing_dialplan import GLOBALS

CONFIG = Path(__file__).resolve().parents[1] / "asterisk-config"


def conf(name: str) -> ConfFile:
    return parse_file(CONFIG / name)


def dialplan() -> dict[str, Section]:
    """Every context of extensions.conf and the files it includes."""
    main = conf("extensions.conf")
    contexts = {s.name: s for s in main.sections if s.name not in ("general", "globals")}
    for include in main.includes:
        for s in conf(include).sections:
            assert s.name not in contexts, f"context [{s.name}] defined twice"
            contexts[s.name] = s
    return contexts


def globals_() -> dict[str, str]:
    return dict(conf("extensions.conf").section("globals").own)


def endpoints() -> dict[str, Section]:
    return {s.name: s for s in conf("pjsip.conf").of_type("endpoint")}


# --- the format -------------------------------------------------------------------------------


def test_the_reader_understands_templates_appends_comments_and_includes():
    text = """
    ; a comment
    #include other.conf
    [base](!)
    type = endpoint ; trailing comment
    allow = alaw
    [phone](base)
    allow = g722
    [phone](+)
    note = semi\\;colon
    ;-- a block
    comment --;
    [x]
    exten => 1,1,NoOp()
    """
    c = parse("\n".join(line.strip() for line in text.splitlines()), Path("t.conf"))
    assert c.includes == ["other.conf"]
    phone = c.section("phone")
    assert phone.type == "endpoint"
    assert phone.getall("allow") == ["alaw", "g722"]
    assert phone.get("note") == "semi;colon"
    assert c.section("x").own == [("exten", "1,1,NoOp()")]
    with pytest.raises(KeyError):
        c.section("base")  # a template is not a section of its own


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG.glob("*.conf")))
def test_every_shipped_file_parses(name):
    assert conf(name).sections


# --- pjsip.conf -------------------------------------------------------------------------------


def test_every_endpoint_points_at_defined_aors_auths_and_transports():
    pjsip = conf("pjsip.conf")
    names = {t: {s.name for s in pjsip.of_type(t)} for t in ("aor", "auth", "transport")}
    for ep in pjsip.of_type("endpoint"):
        for aor in (ep.get("aors") or "").split(","):
            assert aor.strip() in names["aor"], (ep.name, aor)
        for key in ("auth", "outbound_auth"):
            if ep.get(key):
                assert ep.get(key) in names["auth"], (ep.name, key)
        if ep.get("transport"):
            assert ep.get("transport") in names["transport"], ep.name
        assert ep.get("disallow") == "all" or (ep.get("allow") or "").startswith("!all"), ep.name
    for reg in pjsip.of_type("registration"):
        assert reg.get("outbound_auth") in names["auth"]
        assert reg.get("transport") in names["transport"]
    for ident in pjsip.of_type("identify"):
        assert ident.get("endpoint") in endpoints()


def test_agent_phones_register_on_an_aor_of_their_own_name_holding_one_device():
    pjsip = conf("pjsip.conf")
    agents = [ep for ep in pjsip.of_type("endpoint") if ep.get("context") == "from-internal"]
    kinds = {t for ep in agents for t in ep.templates}
    assert {"desk-phone", "softphone", "webrtc"} <= kinds
    for ep in agents:
        aor = pjsip.section(ep.name, "aor")
        assert ep.get("aors") == ep.name
        assert aor.get("max_contacts") == "1" and aor.get("remove_existing") == "yes"
        auth = pjsip.section(ep.get("auth") or "", "auth")
        assert auth.get("username") == ep.name
        assert ep.get("device_state_busy_at") == "1"  # a talking agent is busy for queues
    webrtc = [ep for ep in agents if "webrtc" in ep.templates]
    assert all(ep.get("webrtc") == "yes" and ep.get("transport") == "transport-wss"
               for ep in webrtc)  # fmt: skip


def test_the_trunk_registers_is_identified_and_is_the_one_the_dialplan_dials():
    pjsip = conf("pjsip.conf")
    trunk_name = globals_()["TAMAS_TRUNK"]
    trunk = pjsip.section(trunk_name, "endpoint")
    assert trunk.get("context") == "from-trunk"
    assert trunk.get("outbound_auth")
    assert any(r.get("outbound_auth") == trunk.get("outbound_auth")
               for r in pjsip.of_type("registration"))  # fmt: skip
    assert [i.get("endpoint") for i in pjsip.of_type("identify")] == [trunk_name]


def test_every_endpoint_context_exists_in_the_dialplan():
    contexts = dialplan()
    for ep in endpoints().values():
        assert ep.get("context") in contexts, ep.name


# --- queues.conf ------------------------------------------------------------------------------


def queues() -> dict[str, Section]:
    return {s.name: s for s in conf("queues.conf").sections if s.name != "general" and
            not s.is_template}  # fmt: skip


def test_every_queue_member_is_a_pjsip_endpoint_with_its_own_state_interface():
    eps = endpoints()
    for queue in queues().values():
        members = queue.getall("member")
        assert members, queue.name
        for member in members:
            interface, _penalty, _name, state = (p.strip() for p in member.split(","))
            tech, _, name = interface.partition("/")
            assert tech == "PJSIP" and name in eps, (queue.name, member)
            assert state == interface, (queue.name, member)
        assert queue.get("ringinuse") == "no", queue.name


def test_the_fallback_queue_exists_and_matches_the_gateways_default():
    assert globals_()["TAMAS_FALLBACK_QUEUE"] in queues()
    assert Settings.model_fields["agi_default_queue"].default == globals_()["TAMAS_FALLBACK_QUEUE"]


def test_every_queue_the_dialplan_names_is_defined():
    named = set()
    for ctx in dialplan().values():
        for _key, value in ctx.own:
            named |= set(re.findall(r"\bQueue\(([\w-]+)[,)]", value))
    assert named <= set(queues())


# --- the dialplan -----------------------------------------------------------------------------


def _extensions(ctx: Section) -> tuple[set[str], set[str]]:
    """Extension names and priority labels of a context."""
    extens, labels = set(), set()
    for key, value in ctx.own:
        if key == "exten":
            extens.add(value.split(",", 1)[0])
        if key in ("exten", "same"):
            m = re.match(r"^(?:[^,]+,)?n?\((\w+)\)", value) or re.match(
                r"^[^,]+,\w*\((\w+)\)", value
            )
            if m:
                labels.add(m.group(1))
    return extens, labels


def _targets(value: str) -> list[str]:
    """The Goto targets in one dialplan line (both branches of a GotoIf)."""
    out = []
    for m in re.finditer(r"\bGoto\(([^)]*)\)", value):
        out.append(m.group(1))
    for m in re.finditer(r"\bGotoIf\(\$\[.*?\]\?([^)]*)\)", value):
        out.extend(t for t in m.group(1).split(":") if t)
    return out


def test_every_goto_and_include_lands_on_a_context_extension_or_label_that_exists():
    contexts = dialplan()
    dynamic = 0
    for ctx in contexts.values():
        own_extens, own_labels = _extensions(ctx)
        for key, value in ctx.own:
            if key == "include":
                assert value in contexts, (ctx.name, value)
                continue
            for target in _targets(value):
                if "${" in target:
                    dynamic += 1  # e.g. ${TAMAS_INTERNAL_CONTEXT}: checked below
                    continue
                parts = [p.strip() for p in target.split(",")]
                if len(parts) == 3:
                    assert parts[0] in contexts, (ctx.name, target)
                    extens, _ = _extensions(contexts[parts[0]])
                    assert (
                        parts[1] in extens
                        or any(
                            e.startswith("_") and fnmatch.fnmatch(parts[1], _glob(e))
                            for e in extens
                        )
                        or parts[1].startswith("${")
                    ), (ctx.name, target)
                elif len(parts) == 2:
                    assert parts[0] in own_extens, (ctx.name, target)
                else:
                    assert parts[0] in own_labels, (ctx.name, target)
    assert dynamic >= 1


def _glob(pattern: str) -> str:
    """An Asterisk extension pattern (_X., _0X., _10XX) as an fnmatch pattern."""
    out = ""
    for ch in pattern[1:]:
        out += {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": "*", "!": "*"}.get(ch, ch)
    return out


def test_extensions_conf_includes_the_tamas_file_and_sets_its_globals():
    main = conf("extensions.conf")
    assert main.includes == ["extensions_tamas.conf"]
    assert GLOBALS <= set(globals_())
    assert globals_()["TAMAS_INTERNAL_CONTEXT"] in dialplan()
    assert main.section("general").get("writeprotect") == "yes"


def test_calls_from_the_trunk_go_to_tamas_and_agents_phones_reach_each_other_and_outside():
    contexts = dialplan()
    trunk = [v for k, v in contexts["from-trunk"].own if k == "exten"]
    assert trunk and all("Goto(tamas-inbound,${EXTEN},1)" in v or "Goto(tamas-inbound,s,1)" in v
                         for v in trunk)  # fmt: skip
    internal = contexts["from-internal"]
    assert "agent-extensions" in internal.getall("include")
    assert any("Goto(tamas-outbound,${EXTEN},1)" in v for _, v in internal.own)
    # Every agent phone has an extension and a hint in the agents' context.
    extens, _ = _extensions(contexts["agent-extensions"])
    for name, ep in endpoints().items():
        if ep.get("context") == "from-internal":
            assert any(fnmatch.fnmatch(name, _glob(e)) for e in extens if e.startswith("_"))
            assert ("exten", f"{name},hint,PJSIP/{name}") in contexts["agent-extensions"].own


def test_the_gateway_classifies_the_shipped_contexts_as_their_direction():
    rules = CallRules()

    def matches(name: str, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in patterns)

    assert matches("from-trunk", rules.inbound_contexts)
    assert matches("tamas-inbound", rules.inbound_contexts)
    assert matches("from-internal", rules.internal_contexts)
    assert matches("tamas-outbound", rules.outbound_contexts)
    plan = DialPlan()
    assert {plan.outbound_context, plan.transfer_context} <= set(dialplan())


def test_every_mailbox_the_config_names_is_in_a_voicemail_context_that_exists():
    vm = conf("voicemail.conf")
    boxes = {(s.name, k) for s in vm.sections if s.name != "general" for k, _ in s.own}
    for ep in endpoints().values():
        for mailbox in filter(None, (ep.get("mailboxes") or "").split(",")):
            box, _, context = mailbox.partition("@")
            assert (context or "default", box) in boxes, ep.name
    for ctx in dialplan().values():
        for _key, value in ctx.own:
            for m in re.finditer(r"VoiceMail\((\d+)@(\w+)", value):
                assert (m.group(2), m.group(1)) in boxes, value
    assert vm.named("default")  # the routing's default mailbox context


def test_the_transfer_keys_the_dial_options_allow_are_mapped():
    featuremap = conf("features.conf").section("featuremap")
    assert featuremap.get("blindxfer") and featuremap.get("atxfer")


# --- manager.conf -----------------------------------------------------------------------------

# The classes the gateway's events and actions need (see the comment in manager.conf).
ALLOWED_READ = {"system", "call", "agent", "dialplan", "reporting", "originate"}
ALLOWED_WRITE = {"system", "call", "agent", "originate", "reporting"}


def test_the_gateway_account_is_bound_to_one_address_with_only_the_classes_it_needs():
    account = conf("manager.conf").section("tamas")
    acl = [(k, v) for k, v in account.own if k in ("deny", "permit")]
    assert acl[0] == ("deny", "0.0.0.0/0.0.0.0")
    permits = [v for k, v in acl[1:]]
    assert permits and all(v.endswith("/255.255.255.255") for v in permits)
    read = set((account.get("read") or "").split(","))
    write = set((account.get("write") or "").split(","))
    assert read <= ALLOWED_READ and write <= ALLOWED_WRITE
    assert not ({"all", "command", "config", "user"} & (read | write))
    assert len(account.get("secret") or "") >= 20
    assert account.getall("eventfilter(action(include),name(Newchannel))") == [""]
