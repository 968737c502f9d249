"""Bearer tokens with roles, for every service's API (the router's desktop and supervisor API, escalation cases).

The ``auth`` section of the configuration file lists tokens, each with a role:

* ``agent`` (with its ``agent_id``): reads and acts only on its own agent, offers and assignments;
* ``supervisor``: reads everything, sets any agent's presence, completes and moves contacts, links customers;
* ``admin``: everything a supervisor may, and changes configuration.

Tokens are kept as SHA-256 digests; a presented token is hashed and looked up, so comparing never
depends on how much of a secret matched. Missing or unknown token → 401; a role or agent that may
not do the thing → 403.
"""

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Self

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from kefu.ops import ApiError


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class TokenConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    token: SecretStr = Field(min_length=16, description="The bearer token (at least 16 characters).")
    role: Role
    agent_id: str | None = Field(default=None, description="The agent an agent token acts as.")
    name: str = Field(default="", description="Who holds it, for the audit trail.")

    @model_validator(mode="after")
    def _agent_tokens_name_their_agent(self) -> Self:
        if (self.role is Role.AGENT) != (self.agent_id is not None):
            raise ValueError("an agent token needs agent_id; other roles must not have one")
        return self


class AuthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tokens: list[TokenConfig] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling."""

    role: Role
    agent_id: str | None
    name: str

    @property
    def supervises(self) -> bool:
        return self.role in (Role.SUPERVISOR, Role.ADMIN)

    def may_act_as(self, agent_id: str) -> bool:
        """Whether the caller may read or act on ``agent_id``'s own things."""
        return self.supervises or self.agent_id == agent_id


class TokenRegistry:
    """The configured tokens, by digest."""

    def __init__(self, config: AuthConfig) -> None:
        self._by_digest = {
            _digest(t.token.get_secret_value()): Principal(t.role, t.agent_id, t.name or t.role) for t in config.tokens
        }

    def principal(self, authorization: str | None) -> Principal:
        if not authorization:
            raise _unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("Authorization must be 'Bearer <token>'")
        principal = self._by_digest.get(_digest(token.strip()))
        if principal is None:
            raise _unauthorized("unknown token")
        return principal


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="kefu"'})


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "forbidden", detail)


async def caller(request: Request) -> Principal:
    """The authenticated caller (a FastAPI dependency)."""
    registry: TokenRegistry = request.app.state.tokens
    return registry.principal(request.headers.get("authorization"))


async def supervisor(who: Annotated[Principal, Depends(caller)]) -> Principal:
    """The caller, who must be a supervisor or admin."""
    if not who.supervises:
        raise forbidden(f"{who.role} tokens may not do this; a supervisor's may")
    return who


Caller = Annotated[Principal, Depends(caller)]
Supervisor = Annotated[Principal, Depends(supervisor)]


def require_self_or_supervisor(who: Principal, agent_id: str) -> None:
    """403 unless the caller is ``agent_id`` or supervises."""
    if not who.may_act_as(agent_id):
        raise forbidden(f"an agent token acts only as its own agent ({who.agent_id}), not {agent_id!r}")
