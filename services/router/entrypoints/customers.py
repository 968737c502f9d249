"""Customers across channels, and a contact's history, for the agent desktop."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from contracts import Channel, identities
from kefu.auth import Caller, Supervisor, require_reader
from kefu.ops import ApiError
from services.router import commands, queries
from services.router.adapters.customers import Profile
from services.router.domain.config import CustomerTier
from services.router.domain.config.text import Text
from services.router.entrypoints.deps import Service
from services.router.entrypoints.responses import Contact, Customer
from services.router.exceptions import UnknownAgent, UnknownContact, UnknownCustomer

router = APIRouter(prefix="/v1", tags=["customers"])


class IdentityLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Channel = Field(description="The identity's channel.", examples=["wechat"])
    platform_id: Text = Field(
        min_length=1,
        max_length=256,
        description="Its id there, stored in the form the channel's contacts carry: a phone number in E.164 "
        "(national numbers read in the router's phone_region), an e-mail address normalized and lower-cased, a "
        "WeChat or Douyin id of 6 to 64 letters, digits, '_' or '-'.",
        examples=["oLVPpjqs9BhvzwPj5A-vTYAX3GLc", "+86 138 0013 8000", "Zhang.Wei@Example.com"],
    )


async def _phone_region(request: Request) -> str:
    region: str = request.app.state.router.settings.phone_region
    return region


PhoneRegion = Annotated[str, Depends(_phone_region)]


class ProfileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier: CustomerTier = Field(description="The customer's tier; key accounts prefer their TAM.", examples=["vip"])
    owning_tam: Text | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The agent id of the key account's technical account manager; none when absent.",
        examples=["huang.lei"],
    )


@router.get(
    "/customers/{customer_id}",
    response_model=Customer,
    summary="A customer: profile, identities on every channel, and contacts (supervisors, and agents that hold or "
    "held one of its contacts)",
)
async def get_customer(customer_id: UUID, service: Service, who: Caller) -> dict[str, Any]:
    if not who.supervises:
        require_reader(
            who, await queries.customer_readers(service, customer_id), UnknownCustomer(f"no customer {customer_id}")
        )
    return await queries.customer(service, customer_id)


@router.post(
    "/customers/{customer_id}/identities",
    response_model=Customer,
    summary="Link an identity to a customer (merging the customer it belonged to)",
    responses={422: {"description": "a malformed body, or a platform_id that is no identity on its channel (why)"}},
)
async def link_identity(
    customer_id: UUID, link: IdentityLink, service: Service, _: Supervisor, region: PhoneRegion
) -> dict[str, Any]:
    try:
        platform_id = identities.canonical(link.channel, link.platform_id, phone_region=region)
    except identities.InvalidIdentity as exc:
        raise ApiError(422, "invalid_identity", f"platform_id: {exc}") from None
    return await commands.link_identity(service, customer_id, link.channel, platform_id)


@router.put(
    "/customers/{customer_id}/profile",
    response_model=Customer,
    summary="Set a customer's tier and owning TAM (supervisors)",
    responses={422: {"description": "a malformed body, or an owning_tam that is no agent"}},
)
async def put_profile(customer_id: UUID, body: ProfileBody, service: Service, _: Supervisor) -> dict[str, Any]:
    try:
        return await commands.set_customer_profile(service, customer_id, Profile(body.tier, body.owning_tam))
    except UnknownAgent as exc:
        raise ApiError(422, "unknown_agent", str(exc)) from exc


@router.get(
    "/contacts/{contact_id}",
    response_model=Contact,
    summary="A contact and its messages (supervisors, and agents that hold or held it or have an open offer of it)",
)
async def get_contact(contact_id: UUID, service: Service, who: Caller) -> dict[str, Any]:
    if not who.supervises:
        require_reader(
            who, await queries.contact_readers(service, contact_id), UnknownContact(f"no contact {contact_id}")
        )
    return await queries.contact(service, contact_id)
