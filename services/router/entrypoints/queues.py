"""Queues and their statistics, for wallboards and supervisors."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from contracts import CONTACTS, ROUTING_COMMANDS
from kefu.auth import Caller
from services.router import queries
from services.router.entrypoints.deps import Service
from services.router.entrypoints.responses import Queue, QueueStats

router = APIRouter(prefix="/v1", tags=["queues"])


# Above capacity, contacts wait in Kafka before any queue (issue 12): how many, beside what waits in the queues
BACKLOG_HEADERS = {
    "Kefu-Contacts-Backlog": (CONTACTS, "Customers' messages received and not routed yet (waiting in Kafka)."),
    "Kefu-Commands-Backlog": (ROUTING_COMMANDS, "Routing commands (escalations, moves) not applied yet."),
}


@router.get(
    "/queues",
    response_model=list[Queue],
    summary="Every queue with what waits in it now",
    responses={
        200: {
            "headers": {
                name: {"description": about, "schema": {"type": "integer"}}
                for name, (_, about) in BACKLOG_HEADERS.items()
            }
        }
    },
)
async def list_queues(service: Service, _: Caller, request: Request, response: Response) -> list[dict[str, Any]]:
    backlog = request.app.state.router.backlog()
    for name, (topic, _about) in BACKLOG_HEADERS.items():
        response.headers[name] = str(backlog.get(topic, 0))
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
