"""The simulated PBX's state: channels, bridges, queues, device states, AstDB.

Kept separate from the call scripts so that the list actions (``CoreShowChannels``,
``Status``, ``QueueStatus``, ``DeviceStateList`` ...) answer from the same state the events
were generated from; a gateway resynchronising after a reconnect mid-call then sees a
consistent picture, as it would on a real Asterisk. Time is passed in, never read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cti.simulator.wire import Pairs, event, list_complete, list_start, with_action_id

STATE_DESC = {
    0: "Down",
    1: "Rsrvd",
    2: "OffHook",
    3: "Dialing",
    4: "Ring",
    5: "Ringing",
    6: "Up",
    7: "Busy",
}
DOWN, RING, RINGING, UP = 0, 4, 5, 6


# ast_device_state numbers, as QueueMember/QueueMemberStatus "Status" carries them.
DEVICE_CODES = {
    "UNKNOWN": 0,
    "NOT_INUSE": 1,
    "INUSE": 2,
    "BUSY": 3,
    "INVALID": 4,
    "UNAVAILABLE": 5,
    "RINGING": 6,
    "RINGINUSE": 7,
    "ONHOLD": 8,
}
# ast_extension_state numbers and texts, for ExtensionStatus.
EXTENSION_STATES = {
    "NOT_INUSE": (0, "Idle"),
    "INUSE": (1, "InUse"),
    "BUSY": (2, "Busy"),
    "UNAVAILABLE": (4, "Unavailable"),
    "RINGING": (8, "Ringing"),
    "RINGINUSE": (9, "InUse&Ringing"),
    "ONHOLD": (16, "Hold"),
    "UNKNOWN": (4, "Unavailable"),
    "INVALID": (-1, "Unknown"),
}


@dataclass(eq=False)
class Channel:
    """One Asterisk channel as a channel snapshot describes it."""

    name: str
    uniqueid: str
    linkedid: str
    device: str
    created: float
    state: int = DOWN
    caller_num: str = "<unknown>"
    caller_name: str = "<unknown>"
    connected_num: str = "<unknown>"
    connected_name: str = "<unknown>"
    context: str = "default"
    exten: str = "s"
    priority: int = 1
    application: str = ""
    app_data: str = ""
    bridge_id: str = ""
    language: str = "en"
    account_code: str = ""
    dnid: str = ""
    hangup_at: int = 0
    variables: dict[str, str] = field(default_factory=dict)
    is_local: bool = False
    mixmonitor: str = ""  # the file of the MixMonitor running on it ("" when none)

    def snapshot(self, prefix: str = "") -> Pairs:
        """``ast_manager_build_channel_state_string_prefix``: the block every event repeats."""
        p = prefix
        return [
            (f"{p}Channel", self.name),
            (f"{p}ChannelState", str(self.state)),
            (f"{p}ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
            (f"{p}CallerIDNum", self.caller_num),
            (f"{p}CallerIDName", self.caller_name),
            (f"{p}ConnectedLineNum", self.connected_num),
            (f"{p}ConnectedLineName", self.connected_name),
            (f"{p}Language", self.language),
            (f"{p}AccountCode", self.account_code),
            (f"{p}Context", self.context),
            (f"{p}Exten", self.exten),
            (f"{p}Priority", str(self.priority)),
            (f"{p}Uniqueid", self.uniqueid),
            (f"{p}Linkedid", self.linkedid),
        ]


@dataclass(eq=False)
class Bridge:
    id: str
    channels: list[str] = field(default_factory=list)

    def snapshot(self, prefix: str = "") -> Pairs:
        p = prefix
        return [
            (f"{p}BridgeUniqueid", self.id),
            (f"{p}BridgeType", "basic"),
            (f"{p}BridgeTechnology", "simple_bridge"),
            (f"{p}BridgeCreator", "<unknown>"),
            (f"{p}BridgeName", "<unknown>"),
            (f"{p}BridgeNumChannels", str(len(self.channels))),
            (f"{p}BridgeVideoSourceMode", "none"),
        ]


@dataclass(eq=False)
class QueueMember:
    interface: str
    name: str
    state_interface: str
    penalty: int = 0
    dynamic: bool = False
    paused: bool = False
    paused_reason: str = ""
    calls_taken: int = 0
    last_call: int = 0
    last_pause: int = 0
    login_time: int = 0
    in_call: bool = False
    ringinuse: bool = False
    wrapuptime: int = 0

    def status_fields(self, queue: str, status: int) -> Pairs:
        """Fields of QueueMemberStatus / QueueMemberAdded / QueueMemberPause events."""
        return [
            ("Queue", queue),
            ("MemberName", self.name),
            ("Interface", self.interface),
            ("StateInterface", self.state_interface),
            ("Membership", "dynamic" if self.dynamic else "static"),
            ("Penalty", str(self.penalty)),
            ("CallsTaken", str(self.calls_taken)),
            ("LastCall", str(self.last_call)),
            ("LastPause", str(self.last_pause)),
            ("LoginTime", str(self.login_time)),
            ("InCall", "1" if self.in_call else "0"),
            ("Status", str(status)),
            ("Paused", "1" if self.paused else "0"),
            ("PausedReason", self.paused_reason),
            ("Ringinuse", "1" if self.ringinuse else "0"),
            ("Wrapuptime", str(self.wrapuptime)),
        ]

    def list_item(self, queue: str, status: int) -> Pairs:
        """A QueueMember item of the QueueStatus list (different field names, no Ringinuse)."""
        return [
            ("Event", "QueueMember"),
            ("Queue", queue),
            ("Name", self.name),
            ("Location", self.interface),
            ("StateInterface", self.state_interface),
            ("Membership", "dynamic" if self.dynamic else "static"),
            ("Penalty", str(self.penalty)),
            ("CallsTaken", str(self.calls_taken)),
            ("LastCall", str(self.last_call)),
            ("LastPause", str(self.last_pause)),
            ("LoginTime", str(self.login_time)),
            ("InCall", "1" if self.in_call else "0"),
            ("Status", str(status)),
            ("Paused", "1" if self.paused else "0"),
            ("PausedReason", self.paused_reason),
            ("Wrapuptime", str(self.wrapuptime)),
        ]


@dataclass(eq=False)
class QueueCaller:
    channel: Channel
    joined: float
    original_position: int
    priority: int = 0


@dataclass(eq=False)
class Queue:
    name: str
    strategy: str = "rrmemory"
    timeout: float = 8.0
    retry: float = 1.0
    members: dict[str, QueueMember] = field(default_factory=dict)
    callers: list[QueueCaller] = field(default_factory=list)
    holdtime: int = 0
    talktime: int = 0
    completed: int = 0
    abandoned: int = 0
    rr_next: int = 0

    def position(self, channel: Channel) -> int:
        for i, qc in enumerate(self.callers, 1):
            if qc.channel is channel:
                return i
        return 0


@dataclass
class Agent:
    """A desk phone: extension, display name and how it behaves when it rings."""

    extension: str
    name: str = ""
    ring_seconds: float = 1.0
    answers: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"Agent {self.extension}"


@dataclass
class QueueConfig:
    name: str
    members: list[str]
    strategy: str = "rrmemory"
    timeout: float = 8.0
    retry: float = 1.0


def _default_agents() -> list[Agent]:
    return [Agent("1001"), Agent("1002"), Agent("1003")]


def _default_queues() -> list[QueueConfig]:
    return [
        QueueConfig("support", ["1003"], strategy="ringall"),
        QueueConfig("sales", ["1001", "1002"]),
    ]


@dataclass
class PbxConfig:
    """What the simulated PBX looks like. Defaults mirror the lab the traces came from."""

    tech: str = "PJSIP"
    """``PJSIP`` (or ``SIP``, ``IAX2``...) for production-style names such as
    ``PJSIP/1001-0000000a``; ``Local`` for the lab's ``Local/1001@agent-phones-...;1`` pairs."""
    agents: list[Agent] = field(default_factory=_default_agents)
    queues: list[QueueConfig] = field(default_factory=_default_queues)
    did_queues: dict[str, str] = field(default_factory=dict)
    default_queue: str = "sales"
    trunk: str = "trunk"
    inbound_context: str = "from-trunk"
    internal_context: str = "internal"
    agent_context: str = "from-internal"
    hint_context: str = "ext-local"
    outbound_callerid: str = "02100000000"
    record: bool = True
    spool: str = "/var/spool/asterisk/monitor"
    ami_version: str = "11.0.0"
    asterisk_version: str = "22.10.1"
    dialplan_events: bool = True
    """Emit the Newexten/VarSet chatter a real dialplan produces (most of a real stream)."""

    @property
    def local(self) -> bool:
        return self.tech.lower() == "local"

    def agent_device(self, extension: str) -> str:
        """The device (and dial string) of an agent's phone."""
        if self.local:
            return f"Local/{extension}@agent-phones"
        return f"{self.tech}/{extension}"

    def member_interface(self, extension: str) -> str:
        return f"{self.agent_device(extension)}/n" if self.local else self.agent_device(extension)

    @property
    def outside_device(self) -> str:
        """Device of the outside world (the provider trunk, or the lab's caller simulator)."""
        return "Local/s@caller-sim" if self.local else f"{self.tech}/{self.trunk}"


class PbxState:
    """Everything the PBX knows right now, plus the builders for list-action answers."""

    def __init__(self, config: PbxConfig, now: float) -> None:
        self.config = config
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self.queues: dict[str, Queue] = {}
        self.device_states: dict[str, str] = {}
        self.db: dict[str, str] = {}
        self.globals: dict[str, str] = {}
        self.boot(now)

    def boot(self, now: float, *, min_epoch: int = 0) -> None:
        """(Re)start: no channels, fresh counters, queues from the configuration."""
        self.started = now
        self.epoch_floor = max(int(now), min_epoch)
        self.uid_counter = 0
        self.chan_counters: dict[str, int] = {}
        self.processed_calls = 0
        self.channels.clear()
        self.bridges.clear()
        self.queues.clear()
        self.device_states.clear()
        for qc in self.config.queues:
            queue = Queue(qc.name, qc.strategy, qc.timeout, qc.retry)
            for ext in qc.members:
                agent = self.agent(ext)
                queue.members[self.config.member_interface(ext)] = QueueMember(
                    interface=self.config.member_interface(ext),
                    name=agent.name if agent else f"Agent {ext}",
                    state_interface=self.config.agent_device(ext),
                    login_time=int(now),
                )
            self.queues[qc.name] = queue
        for agent in self.config.agents:
            self.device_states[self.config.agent_device(agent.extension)] = "NOT_INUSE"
        for name in self.queues:
            self.device_states[f"Queue:{name}"] = "NOT_INUSE"

    # -- identities ------------------------------------------------------------------------

    def agent(self, extension: str) -> Agent | None:
        for agent in self.config.agents:
            if agent.extension == extension:
                return agent
        return None

    def agent_by_device(self, device: str) -> Agent | None:
        for agent in self.config.agents:
            if self.config.agent_device(agent.extension) == device:
                return agent
        return None

    def new_uniqueid(self, now: float) -> str:
        uid = f"{max(int(now), self.epoch_floor)}.{self.uid_counter}"
        self.uid_counter += 1
        return uid

    def new_channel_name(self, resource: str, tech: str) -> str:
        n = self.chan_counters.get(tech, 0)
        self.chan_counters[tech] = n + 1
        return f"{tech}/{resource}-{n:08x}"

    # -- queries ---------------------------------------------------------------------------

    def device_code(self, device: str) -> int:
        return DEVICE_CODES.get(self.device_states.get(device, "NOT_INUSE"), 0)

    def aggregate_device_state(self, device: str) -> str:
        """What Asterisk would compute for a device from the channels on it."""
        ringing = in_use = False
        for chan in self.channels.values():
            if chan.device != device or chan.state == DOWN or chan.name.endswith(";2"):
                continue
            if chan.state == RINGING:
                ringing = True
            else:  # ast_state_chan2dev: Ring, Up, Dialing... all count as in use
                in_use = True
        if in_use and ringing:
            return "RINGINUSE"
        if in_use:
            return "INUSE"
        if ringing:
            return "RINGING"
        return "NOT_INUSE"

    def members_for_device(self, device: str) -> list[tuple[Queue, QueueMember]]:
        return [
            (q, m)
            for q in self.queues.values()
            for m in q.members.values()
            if m.state_interface == device
        ]

    def active_calls(self) -> int:
        return len({c.linkedid for c in self.channels.values()})

    # -- list actions (response + items + complete), in Asterisk's exact layout ------------

    def core_show_channels(self, action_id: str | None, now: float) -> list[Pairs]:
        items: list[Pairs] = []
        for chan in self.channels.values():
            secs = max(0, int(now - chan.created))
            items.append(
                [
                    ("Event", "CoreShowChannel"),
                    *([("ActionID", action_id)] if action_id else []),
                    *chan.snapshot(),
                    ("Application", chan.application),
                    ("ApplicationData", chan.app_data),
                    ("Duration", f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"),
                    ("BridgeId", chan.bridge_id),
                ]
            )
        return [
            list_start(action_id, "Channels will follow"),
            *items,
            list_complete("CoreShowChannelsComplete", action_id, len(items)),
        ]

    def status_item(self, chan: Channel, action_id: str | None, now: float) -> Pairs:
        return with_action_id(
            [
                ("Event", "Status"),
                ("Privilege", "Call"),
                *chan.snapshot(),
                ("Type", "Local" if chan.is_local else chan.name.split("/", 1)[0]),
                ("DNID", chan.dnid),
                ("EffectiveConnectedLineNum", chan.connected_num),
                ("EffectiveConnectedLineName", chan.connected_name),
                ("TimeToHangup", str(chan.hangup_at)),
                ("BridgeID", chan.bridge_id),
                ("Application", chan.application),
                ("Data", chan.app_data),
                ("Nativeformats", "(slin)" if chan.is_local else "(ulaw|alaw)"),
                ("Readformat", "slin" if chan.is_local else "ulaw"),
                ("Readtrans", ""),
                ("Writeformat", "slin" if chan.is_local else "ulaw"),
                ("Writetrans", ""),
                ("Callgroup", "0"),
                ("Pickupgroup", "0"),
                ("Seconds", str(max(0, int(now - chan.created)))),
            ],
            action_id,
        )

    def status(self, action_id: str | None, now: float, channel: str | None) -> list[Pairs]:
        chans = [self.channels[channel]] if channel else list(self.channels.values())
        items = [self.status_item(c, action_id, now) for c in chans]
        return [
            list_start(action_id, "Channel status will follow"),
            *items,
            list_complete("StatusComplete", action_id, len(items), [("Items", str(len(items)))]),
        ]

    def queue_status(
        self, action_id: str | None, now: float, queue: str | None, member: str | None
    ) -> list[Pairs]:
        items: list[Pairs] = []
        for q in self.queues.values():
            if queue and q.name.lower() != queue.lower():
                continue
            items.append(
                with_action_id(
                    [
                        ("Event", "QueueParams"),
                        ("Queue", q.name),
                        ("Max", "0"),
                        ("Strategy", q.strategy),
                        ("Calls", str(len(q.callers))),
                        ("Holdtime", str(q.holdtime)),
                        ("TalkTime", str(q.talktime)),
                        ("Completed", str(q.completed)),
                        ("Abandoned", str(q.abandoned)),
                        ("ServiceLevel", "0"),
                        ("ServicelevelPerf", "0.0"),
                        ("ServicelevelPerf2", "0.0"),
                        ("Weight", "0"),
                    ],
                    action_id,
                )
            )
            for m in q.members.values():
                if member and member not in (m.interface, m.name):
                    continue
                items.append(
                    with_action_id(
                        m.list_item(q.name, self.device_code(m.state_interface)), action_id
                    )
                )
            for pos, qc in enumerate(q.callers, 1):
                c = qc.channel
                items.append(
                    with_action_id(
                        [
                            ("Event", "QueueEntry"),
                            ("Queue", q.name),
                            ("Position", str(pos)),
                            ("Channel", c.name),
                            ("Uniqueid", c.uniqueid),
                            ("CallerIDNum", c.caller_num),
                            ("CallerIDName", c.caller_name),
                            ("ConnectedLineNum", c.connected_num),
                            ("ConnectedLineName", c.connected_name),
                            ("Wait", str(max(0, int(now - qc.joined)))),
                            ("Priority", str(qc.priority)),
                        ],
                        action_id,
                    )
                )
        return [
            list_start(action_id, "Queue status will follow"),
            *items,
            list_complete("QueueStatusComplete", action_id, len(items)),
        ]

    def queue_summary(self, action_id: str | None, now: float, queue: str | None) -> list[Pairs]:
        items: list[Pairs] = []
        for q in self.queues.values():
            if queue and q.name.lower() != queue.lower():
                continue
            logged_in = available = 0
            for m in q.members.values():
                code = self.device_code(m.state_interface)
                if code not in (DEVICE_CODES["UNAVAILABLE"], DEVICE_CODES["INVALID"]):
                    logged_in += 1
                    if code in (DEVICE_CODES["NOT_INUSE"], DEVICE_CODES["UNKNOWN"]) and not (
                        m.paused
                    ):
                        available += 1
            longest = max((int(now - qc.joined) for qc in q.callers), default=0)
            items.append(
                with_action_id(
                    [
                        ("Event", "QueueSummary"),
                        ("Queue", q.name),
                        ("LoggedIn", str(logged_in)),
                        ("Available", str(available)),
                        ("Callers", str(len(q.callers))),
                        ("HoldTime", str(q.holdtime)),
                        ("TalkTime", str(q.talktime)),
                        ("LongestHoldTime", str(longest)),
                    ],
                    action_id,
                )
            )
        return [
            list_start(action_id, "Queue summary will follow"),
            *items,
            list_complete("QueueSummaryComplete", action_id, len(items)),
        ]

    def device_state_list(self, action_id: str | None) -> list[Pairs]:
        items = [
            with_action_id(
                [("Event", "DeviceStateChange"), ("Device", dev), ("State", st)],
                action_id,
                first=True,
            )
            for dev, st in self.device_states.items()
        ]
        return [
            list_start(action_id, "Device State Changes will follow"),
            *items,
            list_complete("DeviceStateListComplete", action_id, len(items)),
        ]

    def extension_status_fields(self, agent: Agent) -> Pairs:
        device = self.config.agent_device(agent.extension)
        code, text = EXTENSION_STATES.get(self.device_states.get(device, "NOT_INUSE"), (4, "?"))
        return [
            ("Exten", agent.extension),
            ("Context", self.config.hint_context),
            ("Hint", device),
            ("Status", str(code)),
            ("StatusText", text),
        ]

    def extension_state_list(self, action_id: str | None) -> list[Pairs]:
        items = [
            with_action_id(
                [("Event", "ExtensionStatus"), *self.extension_status_fields(a)],
                action_id,
                first=True,
            )
            for a in self.config.agents
        ]
        return [
            list_start(action_id, "Extension Statuses will follow"),
            *items,
            list_complete("ExtensionStateListComplete", action_id, len(items)),
        ]

    # -- events that only depend on state -------------------------------------------------

    def member_status_event(self, queue: Queue, member: QueueMember, name: str) -> Pairs:
        return event(
            name,
            "agent,all",
            member.status_fields(queue.name, self.device_code(member.state_interface)),
        )
