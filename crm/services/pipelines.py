"""Sales pipelines with ordered stages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.errors import Conflict, NotFound, ValidationFailed
from crm.models import Deal, Pipeline, Stage
from crm.permissions import Principal
from crm.schemas import PipelineIn


def present_pipeline(p: Pipeline) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "is_default": p.is_default,
        "stages": [
            {
                "id": s.id,
                "name": s.name,
                "position": s.position,
                "probability": s.probability,
                "is_won": s.is_won,
                "is_lost": s.is_lost,
            }
            for s in p.stages
        ],
    }


async def create_pipeline(session: AsyncSession, p: Principal | None, data: PipelineIn) -> Pipeline:
    if p is not None:
        p.require("pipeline", "create")
    if await session.scalar(select(Pipeline.id).where(Pipeline.name == data.name)):
        raise Conflict(f"pipeline {data.name!r} exists")
    if not data.stages:
        raise ValidationFailed.one("stages", "a pipeline needs at least one stage")
    if data.is_default:
        await session.execute(update(Pipeline).values(is_default=False))
    has_any = await session.scalar(select(func.count(Pipeline.id)))
    pipe = Pipeline(name=data.name, is_default=data.is_default or not has_any)
    pipe.stages = [
        Stage(
            name=s.name, position=i, probability=s.probability, is_won=s.is_won, is_lost=s.is_lost
        )
        for i, s in enumerate(data.stages)
    ]
    session.add(pipe)
    await session.flush()
    audit.record(
        session,
        p.user_id if p else None,
        "create",
        "pipeline",
        pipe.id,
        audit.diff({}, present_pipeline(pipe)),
    )
    return pipe


async def get_pipeline(session: AsyncSession, pid: int) -> Pipeline:
    pipe = await session.get(Pipeline, pid)
    if pipe is None:
        raise NotFound(f"no pipeline {pid}")
    return pipe


async def replace_stages(
    session: AsyncSession, p: Principal, pid: int, data: PipelineIn
) -> Pipeline:
    """Rename the pipeline and set its stages in order; stages in use cannot be dropped."""
    p.require("pipeline", "edit")
    pipe = await get_pipeline(session, pid)
    before = present_pipeline(pipe)
    by_name = {s.name: s for s in pipe.stages}
    keep = {s.name for s in data.stages}
    for s in pipe.stages:
        if s.name not in keep:
            used = await session.scalar(select(func.count(Deal.id)).where(Deal.stage_id == s.id))
            if used:
                raise Conflict(f"stage {s.name!r} still has {used} deal(s)")
    # Move positions out of the way first: (pipeline_id, position) is unique.
    for i, s in enumerate(pipe.stages):
        s.position = 10_000 + i
    await session.flush()
    stages = []
    for i, s_in in enumerate(data.stages):
        stage = by_name.get(s_in.name) or Stage(name=s_in.name)
        stage.position = i
        stage.probability, stage.is_won, stage.is_lost = (
            s_in.probability,
            s_in.is_won,
            s_in.is_lost,
        )
        stages.append(stage)
    pipe.stages = stages
    pipe.name = data.name
    if data.is_default and not pipe.is_default:
        await session.execute(update(Pipeline).values(is_default=False))
        pipe.is_default = True
    await session.flush()
    changes = audit.diff(before, present_pipeline(pipe))
    if changes:
        audit.record(session, p.user_id, "update", "pipeline", pipe.id, changes)
    return pipe
