"""Gateway configuration: a TOML file plus ``TAMAS_*`` environment variables.

Environment variables win over the file so containers can override single values.
A bad or missing setting becomes a one-line ``ConfigError`` instead of a traceback.
"""

from __future__ import annotations

import os
import secrets
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class ConfigError(Exception):
    """A setting is wrong; the message is one line meant for the operator."""


class AmiServer(BaseModel):
    """One Asterisk PBX the gateway holds an AMI link to."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    host: str
    port: int = Field(default=5038, ge=1, le=65535)
    username: str
    secret: str
    ping_interval: float = Field(default=10.0, gt=0)
    ping_timeout: float = Field(default=5.0, gt=0)
    action_timeout: float = Field(default=10.0, gt=0)
    reconnect_max_delay: float = Field(default=30.0, gt=0)


class CallRules(BaseModel):
    """How calls are classified and logged; see asterisk-config/ for the matching dialplan."""

    inbound_contexts: list[str] = ["from-trunk*", "from-pstn*", "tamas-inbound*"]
    internal_contexts: list[str] = ["from-internal*", "internal*", "agent-phones*"]
    outbound_contexts: list[str] = ["tamas-outbound*", "outbound*", "outrt-*"]
    dids: list[str] = []
    service_level_seconds: float = Field(default=20.0, gt=0)
    wrapup_seconds: float = Field(default=0.0, ge=0)
    callback_on_missed: bool = True
    outbound_context: str = "tamas-outbound"
    transfer_context: str = "tamas-transfer"


class RecordingSettings(BaseModel):
    """Call recordings (recordings/, asterisk-config/RECORDINGS.md): where the PBX's
    MixMonitor files are seen from here, how they are stored, retried and kept.

    The stored copies live in ``recordings_dir`` (default ``<data_dir>/recordings``)."""

    enabled: bool = True
    # The PBX's monitor directory as the PBX sees it: MIXMONITOR_FILENAME values start with
    # it, and files the gateway starts itself are written there.
    pbx_spool_dir: str = Field(default="/var/spool/asterisk/monitor", pattern=r"^/")
    # The same directory as this machine sees it (shared volume or rsync target); None: the
    # PBX's paths are valid here (same machine, or a volume mounted at the same path).
    spool_dir: Path | None = None
    # Per PBX (AMI server name), when several PBXs each have their own spool.
    spool_dirs: dict[str, Path] = Field(default_factory=dict)
    format: Literal["wav", "opus", "mp3"] = "opus"
    bitrate: str = Field(default="24k", pattern=r"^[0-9]{1,4}k$")
    # A file counts as complete once the call ended and it has not changed for this long.
    stable_seconds: float = Field(default=3.0, ge=0)
    # A file that is not there yet is looked for again until this long after the call.
    missing_deadline_minutes: float = Field(default=60.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=10, ge=1)
    workers: int = Field(default=2, ge=1, le=32)
    delete_source: bool = False
    retention_interval_minutes: float = Field(default=60.0, gt=0)
    # Days to keep recordings no retention rule covers; None keeps them.
    default_keep_days: int | None = Field(default=None, ge=1)
    # Records (contact, account, lead, deal, case, activity) with this tag keep their
    # calls' recordings whatever the rules say.
    hold_tag: str = Field(default="keep-recordings", min_length=1, max_length=64)


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class LabelledCode(BaseModel):
    """A code the PBX or the call log stores, with what agents read in each language."""

    code: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    en: str = Field(min_length=1, max_length=80)
    fa: str = Field(min_length=1, max_length=80)


def _code(code: str, en: str, fa: str) -> LabelledCode:
    return LabelledCode(code=code, en=en, fa=fa)


class DesktopSettings(BaseModel):
    """Lists the agent desktop offers (docs/desktop.md): a call's disposition codes (stored
    on the call activity) and the reasons an agent may pause for (sent to the PBX)."""

    dispositions: list[LabelledCode] = Field(
        default_factory=lambda: [
            _code("sale", "Sale", "فروش"),
            _code("information", "Information given", "اطلاع‌رسانی"),
            _code("resolved", "Problem resolved", "مشکل حل شد"),
            _code("follow_up", "Needs follow-up", "نیاز به پیگیری"),
            _code("complaint", "Complaint", "شکایت"),
            _code("not_interested", "Not interested", "علاقه‌ای ندارد"),
            _code("wrong_number", "Wrong number", "شماره اشتباه"),
        ],
        min_length=1,
    )
    pause_reasons: list[LabelledCode] = Field(
        default_factory=lambda: [
            _code("break", "Break", "استراحت"),
            _code("lunch", "Lunch", "ناهار"),
            _code("meeting", "Meeting", "جلسه"),
            _code("training", "Training", "آموزش"),
            _code("paperwork", "Paperwork", "کارهای اداری"),
        ],
        min_length=1,
    )


class WsSettings(BaseModel):
    """The websocket of screen pops and wallboards (docs/websocket.md)."""

    hello_timeout: float = Field(default=5.0, gt=0)
    # Frames queued for one socket before it counts as fallen behind (closed with 4409).
    send_queue: int = Field(default=256, ge=8)
    # Per-user replay buffer: a reconnect within these bounds resumes, else a snapshot.
    replay_events: int = Field(default=500, ge=0)
    replay_bytes: int = Field(default=512 * 1024, ge=0)
    replay_seconds: float = Field(default=600.0, ge=0)
    # Open sockets' tokens, users, roles and teams are checked again this often.
    revalidate_seconds: float = Field(default=10.0, gt=0)
    heartbeat_seconds: float = Field(default=30.0, gt=0)
    lookup_timeout: float = Field(default=2.0, gt=0)
    # A queue's figures, a call of the live list go out at most this often (0: every change).
    queue_stats_interval: float = Field(default=0.25, ge=0)
    call_live_interval: float = Field(default=0.1, ge=0)


class DialerSettings(BaseModel):
    """The outbound dialer (cti/dialer, docs/dialer.md)."""

    enabled: bool = True
    # How often the dialer looks for free agents and due customers (agent.state and
    # call.ended events wake it at once as well).
    tick_seconds: float = Field(default=2.0, gt=0, le=60)
    # A preview card no one acted on goes back to the list after this long.
    offer_timeout_seconds: float = Field(default=300.0, gt=0)
    # An originate with no call seen for this long (beyond the ring timeout) is given up.
    stuck_seconds: float = Field(default=120.0, gt=0)


class AutomationSettings(BaseModel):
    """Automation rules (crm/automation, docs/automation.md)."""

    enabled: bool = True
    # How often scheduled rules are checked; each rule runs at its own ``every_minutes``.
    tick_seconds: float = Field(default=30.0, gt=0, le=3600)


class EmailSettings(BaseModel):
    """E-mail campaigns (crm/campaigns/email, docs/campaigns.md): the SMTP server mail goes
    through, the sender, the public address of the gateway in tracking and unsubscribe
    links, and how bounces and replies come back."""

    enabled: bool = True
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout: float = Field(default=30.0, gt=0)
    from_address: str = Field(default="crm@localhost", pattern=r"^[^@\s]+@[^@\s]+$")
    from_name: str = Field(default="Tamas", max_length=200)
    # Envelope sender (MAIL FROM): where bounces go; the From address when unset.
    bounce_address: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    # Domain of our Message-IDs; the From address's domain when unset.
    message_id_domain: str | None = None
    # How customers reach the gateway from their mail client (open pixel, clicks,
    # unsubscribe): the gateway's public https address.
    public_url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://[^\s]+$")
    # Pace of a campaign unless the campaign sets its own.
    rate_per_minute: int = Field(default=60, ge=1, le=100_000)
    # Shared secret of POST /email/inbound (the MTA pipes bounces and replies there);
    # unset: the endpoint is off (admins can still post to /api/v1/email/inbound).
    inbound_secret: str | None = Field(default=None, min_length=16)
    # Soft bounces (mailbox full...) of this many messages in a row to an address suppress
    # it like a hard bounce; 0: never.
    soft_bounce_limit: int = Field(default=3, ge=0, le=100)
    # A maildir the MTA delivers bounces and replies to, polled every poll_seconds.
    maildir: Path | None = None
    poll_seconds: float = Field(default=30.0, gt=0)
    # How often scheduled campaigns are started and interrupted ones resumed.
    scheduler_seconds: float = Field(default=30.0, gt=0)


class Settings(BaseSettings):
    """Every setting of ``tamas``; the README's "Configuration" table says what each means."""

    model_config = SettingsConfigDict(
        env_prefix="TAMAS_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Path("data")
    database_url: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    agi_host: str = "127.0.0.1"
    agi_port: int = Field(default=4573, ge=0, le=65535)
    agi_deadline_ms: int = Field(default=300, gt=0)
    # Route when no rule decides or the deadline passes (asterisk-config/extensions_tamas.conf).
    agi_default_queue: str = Field(default="sales", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    recordings_dir: Path | None = None
    recordings: RecordingSettings = Field(default_factory=RecordingSettings)
    phone_region: str = Field(default="IR", pattern=r"^[A-Z]{2}$")
    timezone: str = "Asia/Tehran"
    log_level: LogLevel = "INFO"
    secret_key: str | None = Field(default=None, min_length=32)
    token_ttl_hours: float = Field(default=12.0, gt=0)
    ami: list[AmiServer] = Field(default_factory=list)
    calls: CallRules = Field(default_factory=CallRules)
    simulate_pbx: bool = True
    simulated_calls_per_minute: float = Field(default=2.0, ge=0)
    # Several gateway instances (docs/CAPACITY.md): Redis carries events between them and
    # a lease per PBX decides which one holds its AMI link. Unset: one instance, no Redis.
    redis_url: str | None = None
    instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    redis_prefix: str = Field(default="tamas", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    lease_ttl_seconds: float = Field(default=5.0, ge=0.5, le=300)
    # Where the other instances reach this one's HTTP API: a control action (click-to-call,
    # hangup, pause...) that lands on an instance without the PBX's link is carried out by
    # the holder at this address. Unset: built from http_host and http_port (instance_url).
    advertise_url: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    cluster_stream_maxlen: int = Field(default=100_000, ge=1000)
    desktop: DesktopSettings = Field(default_factory=DesktopSettings)
    ws: WsSettings = Field(default_factory=WsSettings)
    dialer: DialerSettings = Field(default_factory=DialerSettings)
    automation: AutomationSettings = Field(default_factory=AutomationSettings)
    email: EmailSettings = Field(default_factory=EmailSettings)

    @model_validator(mode="after")
    def _reachable_by_the_others(self) -> Settings:
        if self.redis_url and self.http_port == 0 and not self.advertise_url:
            raise ValueError(
                "http_port 0 (any free port) with redis_url: the other instances could not "
                "reach this one; set advertise_url (TAMAS_ADVERTISE_URL) or a fixed http_port"
            )
        return self

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith("sqlite:///"):
            value = "sqlite+aiosqlite:///" + value[len("sqlite:///") :]
        if value.startswith(("postgresql://", "postgres://")):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @property
    def db_url(self) -> str:
        """The database URL, defaulting to a SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tamas.db').resolve()}"

    @property
    def instance_name(self) -> str:
        """This instance in the cluster: ``instance_id``, else host name and process id."""
        return self.instance_id or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def instance_url(self) -> str:
        """Base URL of this instance's HTTP API for the other instances: ``advertise_url``,
        else ``http://http_host:http_port``, with the host name in place of an address that
        means every interface (``0.0.0.0``, ``::``), which no other machine can dial."""
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = self.http_host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"  # an IPv6 address
        return f"http://{host}:{self.http_port}"

    @property
    def recordings_path(self) -> Path:
        return self.recordings_dir or self.data_dir / "recordings"

    def ensure_secret(self) -> str:
        """The secret key; generated once and kept in the data directory when not configured."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret.key"
        if path.exists():
            key = path.read_text().strip()
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            key = secrets.token_urlsafe(48)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(key)
        self.secret_key = key
        return key

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def _flatten_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        env = "TAMAS_" + "__".join(str(p) for p in err["loc"]).upper()
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc} ({env}): {msg}")
    return "; ".join(parts)


# Variables with the TAMAS_ prefix that are not settings of the gateway itself.
NOT_SETTINGS = ("TAMAS_CONFIG", "TAMAS_TEST_", "TAMAS_SKIP_APT")


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (``--config`` or ``TAMAS_CONFIG``) then the environment.

    Raises ConfigError with a single line naming the setting at fault.
    """
    file_values: dict[str, Any] = {}
    path = config_file or os.environ.get("TAMAS_CONFIG")
    if path:
        p = Path(path)
        try:
            file_values = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
        file_values = file_values.get("tamas", file_values)
    env_keys = {
        k[len("TAMAS_") :].split("__")[0].lower()
        for k in os.environ
        if k.startswith("TAMAS_") and not k.startswith(NOT_SETTINGS)
    }
    unknown = sorted(env_keys - set(Settings.model_fields))
    if unknown:
        # A typo in a variable name would otherwise be silently ignored.
        raise ConfigError(f"unknown setting TAMAS_{unknown[0].upper()}")
    # Environment beats the file: drop file values the environment sets.
    init = {k: v for k, v in file_values.items() if k not in env_keys}
    init.update(overrides)
    try:
        return Settings(**init)
    except ValidationError as exc:
        raise ConfigError(_flatten_error(exc)) from None
