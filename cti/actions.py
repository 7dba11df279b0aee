"""PBX actions as data: which AMI action, with which fields, does what a user asked.

Pure functions, so the exact wire form is tested without a PBX; ``cti.control`` sends them
over the link after the permission checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from crm.phones import PhoneError, parse
from cti.callstate.support import ORIGINATE_VARIABLE

Fields = list[tuple[str, str]]


@dataclass(frozen=True)
class PbxAction:
    name: str
    fields: Fields = field(default_factory=list)


@dataclass(frozen=True)
class DialPlan:
    """Where the gateway's own calls enter the dialplan (see asterisk-config/tamas.conf)."""

    outbound_context: str = "tamas-outbound"
    spy_context: str = "tamas-spy"
    transfer_context: str = "tamas-transfer"
    # Header that makes desk phones and softphones answer the first leg by themselves.
    auto_answer_header: str = "Call-Info=<sip:tamas>;answer-after=0"


def dial_string(e164: str, region: str) -> str:
    """What the trunk dials: the national form for domestic numbers (0912...), ``00`` + the
    international number otherwise — the way Iranian trunks expect it."""
    try:
        parsed = parse(e164, region)
    except PhoneError as exc:
        raise ValueError(f"cannot dial {e164!r}: {exc.reason}") from None
    import phonenumbers

    num = phonenumbers.parse(parsed.e164, None)
    if parsed.region_code == region:
        return (
            phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
            .replace(" ", "")
            .replace("-", "")
        )
    return "00" + parsed.e164[1:]


def click_to_call(
    device: str,
    e164: str,
    region: str,
    action_id_hint: str,
    *,
    caller_id: str | None = None,
    record: tuple[str, int] | None = None,
    agent: str | None = None,
    auto_answer: bool = False,
    plan: DialPlan | None = None,
    timeout_s: int = 30,
    extra_variables: Mapping[str, str] | None = None,
) -> PbxAction:
    """Ring the agent's own device first; when they pick up, dial the customer.

    The record the call was started from rides along as ``TAMAS_<TYPE>_ID`` so the call log
    lands on it whatever number the customer shares with others; ``extra_variables`` (the
    dialer's ``TAMAS_CAMPAIGN_ID``...) ride along the same way.
    """
    plan = plan or DialPlan()
    variables = [f"{ORIGINATE_VARIABLE}={action_id_hint}"]
    if record is not None:
        variables.append(f"TAMAS_{record[0].upper()}_ID={record[1]}")
    if agent:
        variables.append(f"TAMAS_AGENT={agent}")
    for name, value in (extra_variables or {}).items():
        if not name.replace("_", "").isalnum() or "," in value or "=" in value:
            raise ValueError(f"unusable channel variable {name}={value!r}")
        variables.append(f"{name}={value}")
    if auto_answer and device.upper().startswith("PJSIP/"):
        variables.append(f"PJSIP_HEADER(add,Call-Info)={plan.auto_answer_header.split('=', 1)[1]}")
    elif auto_answer and device.upper().startswith("SIP/"):
        variables.append(f"__SIPADDHEADER={plan.auto_answer_header.replace('=', ': ', 1)}")
    fields: Fields = [
        ("Channel", device),
        ("Context", plan.outbound_context),
        ("Exten", dial_string(e164, region)),
        ("Priority", "1"),
        ("Timeout", str(timeout_s * 1000)),
        ("Async", "true"),
        ("Variable", ",".join(variables)),
    ]
    if caller_id:
        fields.append(("CallerID", caller_id))
    return PbxAction("Originate", fields)


def hangup(channel: str) -> PbxAction:
    return PbxAction("Hangup", [("Channel", channel), ("Cause", "16")])


def blind_transfer(channel: str, exten: str, plan: DialPlan | None = None) -> PbxAction:
    """Send the customer's channel to ``exten`` (the agent's side hangs up)."""
    plan = plan or DialPlan()
    return PbxAction(
        "Redirect",
        [
            ("Channel", channel),
            ("Context", plan.transfer_context),
            ("Exten", exten),
            ("Priority", "1"),
        ],
    )


def attended_transfer(agent_channel: str, exten: str, plan: DialPlan | None = None) -> PbxAction:
    """The agent consults ``exten`` first; hanging up completes the transfer (Atxfer)."""
    plan = plan or DialPlan()
    return PbxAction(
        "Atxfer",
        [("Channel", agent_channel), ("Exten", exten), ("Context", plan.transfer_context)],
    )


def hold(device: str, on: bool) -> PbxAction:
    """Press hold on the agent's phone itself (PJSIP NOTIFY understood by Yealink, Snom,
    Fanvil and others); phones that ignore it are held with their own hold key."""
    if not device.upper().startswith("PJSIP/"):
        raise ValueError("hold from the gateway needs a PJSIP phone; use the phone's hold key")
    endpoint = device.split("/", 1)[1]
    return PbxAction(
        "PJSIPNotify",
        [("Endpoint", endpoint), ("Variable", f"Event={'hold' if on else 'talk'}")],
    )


def queue_add(queue: str, interface: str, member_name: str, penalty: int = 0) -> PbxAction:
    return PbxAction(
        "QueueAdd",
        [
            ("Queue", queue),
            ("Interface", interface),
            ("MemberName", member_name),
            ("Penalty", str(penalty)),
            ("Paused", "false"),
        ],
    )


def queue_remove(queue: str, interface: str) -> PbxAction:
    return PbxAction("QueueRemove", [("Queue", queue), ("Interface", interface)])


def queue_pause(
    interface: str, paused: bool, reason: str = "", queue: str | None = None
) -> PbxAction:
    fields: Fields = [("Interface", interface), ("Paused", "true" if paused else "false")]
    if queue:
        fields.append(("Queue", queue))
    if reason:
        fields.append(("Reason", reason))
    return PbxAction("QueuePause", fields)


SPY_MODES = {"listen": "qE", "whisper": "qwE", "barge": "qBE"}


def spy(
    supervisor_device: str, target_channel: str, mode: str, plan: DialPlan | None = None
) -> PbxAction:
    """Ring the supervisor's phone and, when answered, ChanSpy on the agent's channel:
    listen (silent), whisper (only the agent hears) or barge (both hear)."""
    if mode not in SPY_MODES:
        raise ValueError(f"mode must be one of {', '.join(SPY_MODES)}")
    return PbxAction(
        "Originate",
        [
            ("Channel", supervisor_device),
            ("Application", "ChanSpy"),
            # The full channel name: a prefix such as PJSIP/1001 would also match PJSIP/10011.
            ("Data", f"{target_channel},{SPY_MODES[mode]}"),
            ("CallerID", f'"{mode}" <spy>'),
            ("Async", "true"),
        ],
    )


def mixmonitor(channel: str, filename: str) -> PbxAction:
    return PbxAction("MixMonitor", [("Channel", channel), ("File", filename), ("Options", "b")])


def stop_mixmonitor(channel: str) -> PbxAction:
    return PbxAction("StopMixMonitor", [("Channel", channel)])


def mixmonitor_mute(channel: str, muted: bool) -> PbxAction:
    """Mute (or unmute) every direction of the MixMonitor on ``channel``: Asterisk writes
    silence meanwhile, so what is said (a card number) never reaches the file."""
    return PbxAction(
        "MixMonitorMute",
        [("Channel", channel), ("Direction", "both"), ("State", "1" if muted else "0")],
    )
