"""API tokens issued and revoked through the admin API (``/v1/tokens`` on the router and the escalation service).

Both services read one table (schema ``auth``), so a token issued through either works on both, and a revoked one
stops at once on both (no cache). Only the token's SHA-256 is stored; the token itself is shown once, when issued.
Tokens of the configuration file are listed there, not here.
"""

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema, model_validator
from sqlalchemy import Column, DateTime, LargeBinary, String, Table, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.text import storable
from kefu.auth import Admin, AuthConfig, Principal, Role, TokenRegistry, digest
from kefu.db import metadata as schema_metadata
from kefu.ops import ApiError

metadata = schema_metadata("auth")

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("sha256", LargeBinary(32), nullable=False, unique=True, comment="the token's SHA-256; never the token"),
    Column("role", String(16), nullable=False),
    Column("agent_id", String(128)),
    Column("name", String(256), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    comment="bearer tokens issued through the admin API",
)

PREFIX = "kefu_"  # lets secret scanners recognise a leaked token


class TokenStore:
    """The issued tokens in PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def find(self, token_digest: bytes) -> Principal | None:
        """The principal of a live token with this digest (``kefu.auth.StoredLookup``)."""
        query = select(api_tokens.c.role, api_tokens.c.agent_id, api_tokens.c.name).where(
            api_tokens.c.sha256 == token_digest,
            api_tokens.c.revoked_at.is_(None),
            or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > func.now()),
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else Principal(Role(row.role), row.agent_id, row.name)

    async def issue(self, request: "TokenRequest", *, by: str) -> "IssuedToken":
        """A new token: its record, and the token itself (shown this once)."""
        token = PREFIX + secrets.token_urlsafe(32)
        expires = None
        if request.expires_in_days is not None:
            expires = datetime.now(UTC) + timedelta(days=request.expires_in_days)
        values = {
            "id": uuid.uuid4(),
            "sha256": digest(token),
            "role": request.role.value,
            "agent_id": request.agent_id,
            "name": request.name,
            "created_by": by,
            "expires_at": expires,
        }
        async with self._engine.begin() as conn:
            row = (await conn.execute(insert(api_tokens).values(values).returning(*_LISTED))).mappings().one()
        return IssuedToken(**_fields(row), token=token)

    async def issued(self) -> list["TokenView"]:
        """Every issued token, revoked ones too, oldest first."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(*_LISTED).order_by(api_tokens.c.created_at))).mappings()
            return [TokenView(**_fields(row)) for row in rows]

    async def revoke(self, token_id: uuid.UUID) -> bool:
        """Revoke a live token; False when there is none with that id (or it was revoked already)."""
        async with self._engine.begin() as conn:
            done = await conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=func.now())
                .returning(api_tokens.c.id)
            )
            return done.first() is not None


_LISTED = [c for c in api_tokens.c if c.name != "sha256"]


@dataclass(frozen=True)
class Tokens:
    """The callers' tokens as a service runs them: the registry that authenticates every request (``kefu.auth``)
    and the store behind the admin API, over one engine, so a token issued is known at once."""

    registry: TokenRegistry
    store: TokenStore


def tokens_of(config: AuthConfig, engine: AsyncEngine) -> Tokens:
    """The configuration's static tokens and OIDC issuer, and the tokens issued through the admin API."""
    store = TokenStore(engine)
    return Tokens(TokenRegistry(config, stored=store.find), store)


def _fields(row: Any) -> dict[str, Any]:
    return {"token_id": row["id"], **{name: row[name] for name in _VIEWED}}


def _iso(moment: datetime) -> str:
    return moment.isoformat()


# answered as Python writes it (``+00:00``), which callers have read since tokens were first listed
Instant = Annotated[
    datetime, PlainSerializer(_iso, return_type=str), WithJsonSchema({"type": "string", "format": "date-time"})
]


class TokenView(BaseModel):
    """An issued token as admins list it: who holds it, its role and lifetime; never its secret."""

    token_id: uuid.UUID = Field(description="Names it to revoke it.")
    role: Role
    agent_id: str | None
    name: str
    created_by: str = Field(description="The admin who issued it.")
    created_at: Instant
    expires_at: Instant | None
    revoked_at: Instant | None


_VIEWED = [name for name in TokenView.model_fields if name != "token_id"]


class IssuedToken(TokenView):
    """A token just issued: the only answer that holds the token itself (only its SHA-256 is kept)."""

    token: str = Field(description="Send it as 'Authorization: Bearer <token>'.")


Storable = Annotated[str, AfterValidator(storable)]  # NUL or a lone surrogate would be a database error


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role = Field(examples=["agent"])
    agent_id: Storable | None = Field(
        default=None, min_length=1, max_length=128, description="For an agent token: who."
    )
    name: Storable = Field(
        min_length=1, max_length=256, description="Who holds it, for the audit trail.", examples=["王丽"]
    )
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, description="None: until revoked.")

    @model_validator(mode="after")
    def _agent_tokens_name_their_agent(self) -> Self:
        if (self.role is Role.AGENT) != (self.agent_id is not None):
            raise ValueError("an agent token needs agent_id; other roles must not have one")
        return self


async def _store(request: Request) -> TokenStore:
    store: TokenStore = request.app.state.token_store
    return store


Store = Annotated[TokenStore, Depends(_store)]

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


@router.post("", status_code=201, summary="Issue a bearer token (admins); the token is in this answer only")
async def issue_token(body: TokenRequest, store: Store, who: Admin) -> IssuedToken:
    return await store.issue(body, by=who.name)


@router.get("", summary="The issued tokens, without their secrets (admins)")
async def list_tokens(store: Store, _: Admin) -> list[TokenView]:
    return await store.issued()


@router.delete("/{token_id}", status_code=204, summary="Revoke a token at once, on every service (admins)")
async def revoke_token(token_id: uuid.UUID, store: Store, _: Admin) -> Response:
    if not await store.revoke(token_id):
        raise ApiError(404, "unknown_token", f"no live token {token_id}")
    return Response(status_code=204)
