"""Gateway configuration: a TOML file plus ``TAMAS_*`` environment variables.

Environment variables win over the file so containers can override single values.
A bad or missing setting becomes a one-line ``ConfigError`` instead of a traceback.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, ValidationError, field_validator
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


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    """Every setting of ``tamas``; see ``docs/configuration.md`` for the meaning of each."""

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
    phone_region: str = Field(default="IR", pattern=r"^[A-Z]{2}$")
    timezone: str = "Asia/Tehran"
    log_level: LogLevel = "INFO"
    secret_key: str | None = Field(default=None, min_length=32)
    token_ttl_hours: float = Field(default=12.0, gt=0)
    ami: list[AmiServer] = Field(default_factory=list)
    calls: CallRules = Field(default_factory=CallRules)
    simulate_pbx: bool = True
    simulated_calls_per_minute: float = Field(default=2.0, ge=0)
    redis_url: str | None = None

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
