"""The router's running objects as FastAPI dependencies (async: sync ones would run in a thread pool)."""

from typing import Annotated

from fastapi import Depends, Request

from services.router.service import RoutingService


async def _service(request: Request) -> RoutingService:
    service: RoutingService = request.app.state.router.service
    return service


Service = Annotated[RoutingService, Depends(_service)]
