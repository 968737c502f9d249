"""Queues and their statistics, for wallboards and supervisors."""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from kefu.auth import Caller
from services.router import queries
from services.router.entrypoints.deps import Service
from services.router.entrypoints.responses import Queue, QueueStats

router = APIRouter(prefix="/v1", tags=["queues"])


@router.get("/queues", response_model=list[Queue], summary="Every queue with what waits in it now")
async def list_queues(service: Service, _: Caller) -> list[dict[str, Any]]:
    return await queries.queues_now(service)


@router.get("/queues/{queue_id}/stats", response_model=QueueStats, summary="A queue now, and over a recent window")
async def queue_stats(
    queue_id: str,
    service: Service,
    _: Caller,
    window_minutes: Annotated[int, Query(ge=1, le=10080, description="How far back the window reaches.")] = 60,
    answer_within_seconds: Annotated[
        int | None,
        Query(ge=1, le=86400, description="The service-level threshold; the queue's target (else 20 s) when absent."),
    ] = None,
) -> dict[str, Any]:
    return await queries.queue_stats(
        service, queue_id, window_minutes=window_minutes, answer_within_seconds=answer_within_seconds
    )
