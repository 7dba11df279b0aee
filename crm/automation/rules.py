"""Automation rules as data: each kind's configuration schema, validated before it is saved.

A rule is ``{"name", "kind", "enabled", "config"}``; ``config`` is checked against the
kind's schema here, so what is stored always runs. ``TRIGGERS`` says when each kind runs:
on an event (a record change, a user deactivated) and/or on a schedule (every
``every_minutes``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from crm.errors import ValidationFailed
from crm.schemas import Strict

CUSTOMER_STAGES_DEFAULT = ["customer"]


class InactiveCustomerConfig(Strict):
    """A customer with no activity (call, note, task, meeting) for ``days`` days is
    flagged ``set_stage`` (former, lost...), optionally tagged, and can enter a win-back
    campaign (added to its static segment; a call campaign's list picks them up)."""

    entity: Literal["contact", "account"] = "contact"
    days: int = Field(ge=1, le=3650)
    # Lifecycle stages that count as active customers (empty: any stage but set_stage).
    stages: list[str] = Field(default_factory=lambda: list(CUSTOMER_STAGES_DEFAULT))
    set_stage: str = Field(default="former", min_length=1, max_length=32)
    add_tag: str | None = Field(default=None, min_length=1, max_length=64)
    win_back_campaign_id: int | None = None
    every_minutes: int = Field(default=1440, ge=1, le=525_600)


class StaleProspectConfig(Strict):
    """A prospect with no activity for ``days`` days is released to the pool: its owner
    is cleared (the team stays), so anyone (or a lead assignment rule) may take it."""

    entity: Literal["lead", "contact"] = "lead"
    days: int = Field(default=90, ge=1, le=3650)
    # Lead statuses (leads) or lifecycle stages (contacts) that count as open prospects.
    statuses: list[str] | None = None
    every_minutes: int = Field(default=1440, ge=1, le=525_600)

    def open_statuses(self) -> list[str]:
        if self.statuses is not None:
            return self.statuses
        return ["new", "contacted", "qualified"] if self.entity == "lead" else ["prospect", "lead"]


Entity = Literal["contact", "account", "lead", "deal", "task"]
ENTITIES: tuple[Entity, ...] = ("contact", "account", "lead", "deal", "task")


class UserDeactivatedConfig(Strict):
    """When a user is deactivated, their customers, open deals and open tasks go to
    ``to_user_id``, else round robin among the active members of ``team_id``, else among
    the active members of the deactivated user's own teams."""

    to_user_id: int | None = None
    team_id: int | None = None
    entities: list[Entity] = Field(default_factory=lambda: list(ENTITIES), min_length=1)


class AssignAction(Strict):
    """Give the record to an active user with this skill / role / team (the least loaded,
    or round robin)."""

    type: Literal["assign"]
    skill: str | None = Field(default=None, max_length=64)
    role: str | None = Field(default=None, max_length=64)
    team_id: int | None = None
    strategy: Literal["least_loaded", "round_robin"] = "least_loaded"

    @model_validator(mode="after")
    def _some_filter(self) -> AssignAction:
        if self.skill is None and self.role is None and self.team_id is None:
            raise ValueError("assign needs a skill, a role or a team_id")
        return self


class TaskAction(Strict):
    """Create a task on the record, due ``due_in_hours`` later, for its owner (after any
    assign action before it), nobody, or a named user."""

    type: Literal["create_task"]
    subject: str = Field(min_length=1, max_length=200)
    body: str | None = Field(default=None, max_length=4000)
    due_in_hours: float = Field(default=24, ge=0, le=24 * 365)
    assign_to: Literal["owner", "unassigned"] | int = "owner"
    priority: Literal["low", "normal", "high", "urgent"] = "normal"


class EmailAction(Strict):
    """Send an e-mail campaign's template to the record (a deal's contact): the record joins
    the campaign's static segment and the campaign sends to its new members (opt-outs,
    suppressed addresses and unsubscribes honoured; see crm/automation/mailer.py)."""

    type: Literal["send_email"]
    campaign_id: int


Action = Annotated[AssignAction | TaskAction | EmailAction, Field(discriminator="type")]


class StageActionConfig(Strict):
    """When a lead enters / leaves a status, or a deal a stage (by name, optionally in one
    pipeline), run the actions in order."""

    entity: Literal["lead", "deal"]
    on: Literal["enter", "exit"] = "enter"
    stage: str = Field(min_length=1, max_length=128)
    pipeline_id: int | None = None
    actions: list[Action] = Field(min_length=1, max_length=10)


class LeadAssignmentConfig(Strict):
    """New unassigned leads (and, every ``every_minutes``, any left unassigned) go to the
    users listed or the members of ``team_id`` (with ``skill``), round robin or least
    loaded, never beyond ``cap_per_hour`` / ``cap_per_day`` leads per user. A lead an
    agent returned (approved by a supervisor) never goes back to them."""

    user_ids: list[int] = Field(default_factory=list, max_length=1000)
    team_id: int | None = None
    skill: str | None = Field(default=None, max_length=64)
    strategy: Literal["round_robin", "least_loaded"] = "round_robin"
    cap_per_hour: int | None = Field(default=None, ge=1, le=100_000)
    cap_per_day: int | None = Field(default=None, ge=1, le=1_000_000)
    sources: list[str] = Field(default_factory=list)  # only leads from these sources
    lead_list_id: int | None = None
    every_minutes: int = Field(default=5, ge=1, le=525_600)

    @model_validator(mode="after")
    def _who(self) -> LeadAssignmentConfig:
        if not self.user_ids and self.team_id is None:
            raise ValueError("lead assignment needs user_ids or a team_id")
        return self


class RemindersConfig(Strict):
    """Push a reminder to the agent's desktop before a task is due (to its assignee, else
    its owner) and before a meeting starts (to its owner)."""

    task_minutes_before: int = Field(default=15, ge=0, le=10_080)
    meeting_minutes_before: int = Field(default=15, ge=0, le=10_080)
    # Still remind this long after the time passed (the user was away, the gateway down).
    overdue_grace_minutes: int = Field(default=60, ge=0, le=10_080)
    every_minutes: int = Field(default=1, ge=1, le=1440)


CONFIGS: dict[str, type[BaseModel]] = {
    "inactive_customer": InactiveCustomerConfig,
    "stale_prospect": StaleProspectConfig,
    "user_deactivated": UserDeactivatedConfig,
    "stage_action": StageActionConfig,
    "lead_assignment": LeadAssignmentConfig,
    "reminders": RemindersConfig,
}

# kind -> what starts it: "schedule", "event" or both.
TRIGGERS: dict[str, tuple[str, ...]] = {
    "inactive_customer": ("schedule",),
    "stale_prospect": ("schedule",),
    "user_deactivated": ("event",),
    "stage_action": ("event",),
    "lead_assignment": ("event", "schedule"),
    "reminders": ("schedule",),
}
SCHEDULED = tuple(k for k, t in TRIGGERS.items() if "schedule" in t)


class RuleIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=4000)
    kind: Literal[
        "inactive_customer",
        "stale_prospect",
        "user_deactivated",
        "stage_action",
        "lead_assignment",
        "reminders",
    ]
    enabled: bool = True
    config: dict[str, Any] = Field(default_factory=dict)


class RulePatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=4000)
    enabled: bool | None = None
    config: dict[str, Any] | None = None


def parse_config(kind: str, config: dict[str, Any]) -> BaseModel:
    """The kind's config model, or ValidationFailed naming each bad field as
    ``config.<field>``."""
    model = CONFIGS.get(kind)
    if model is None:
        raise ValidationFailed.one("kind", f"unknown rule kind {kind!r}")
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            errors.append(
                {
                    "field": f"config.{loc}" if loc else "config",
                    "reason": err["msg"].removeprefix("Value error, "),
                }
            )
        raise ValidationFailed(errors) from None


def normalized(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config as stored: validated, with the defaults filled in."""
    return parse_config(kind, config).model_dump(mode="json")


def every_minutes(kind: str, config: dict[str, Any]) -> int | None:
    if kind not in SCHEDULED:
        return None
    return int(config.get("every_minutes") or 60)  # stored configs carry the default
