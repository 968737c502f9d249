"""Customers across channels, and a contact's history, for the agent desktop."""

from typing import Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from contracts import Channel
from kefu.auth import Caller, Supervisor
from services.router.entrypoints.deps import Service

router = APIRouter(prefix="/v1", tags=["customers"])


class IdentityLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Channel = Field(description="The identity's channel.", examples=["wechat"])
    platform_id: str = Field(min_length=1, max_length=256, description="Its id there.", examples=["oX1a2b3c"])


@router.get("/customers/{customer_id}", summary="A customer: identities on every channel, and contacts")
async def get_customer(customer_id: UUID, service: Service, _: Caller) -> dict[str, Any]:
    return await service.customer(customer_id)


@router.post(
    "/customers/{customer_id}/identities",
    summary="Link an identity to a customer (merging the customer it belonged to)",
)
async def link_identity(customer_id: UUID, link: IdentityLink, service: Service, _: Supervisor) -> dict[str, Any]:
    return await service.link_identity(customer_id, link.channel, link.platform_id)


@router.get("/contacts/{contact_id}", summary="A contact and its messages")
async def get_contact(contact_id: UUID, service: Service, _: Caller) -> dict[str, Any]:
    return await service.contact(contact_id)
