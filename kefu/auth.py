"""Who may call what, for every service's API (the router's desktop and supervisor API, escalation cases).

Authentication: ``Authorization: Bearer <token>``, one of

* a static token from the ``auth`` section of the configuration file, given in clear (``token``, hashed when the
  file is read) or already hashed (``sha256``: the hex SHA-256 of the token, so the file holds no secret);
* a token issued through the admin API (``/v1/tokens``, ``kefu.tokens``): only its SHA-256 is stored;
* a JWT from the configured OIDC issuer (``auth.oidc``): signature checked with the issuer's JWKS, ``iss``, ``aud``
  and ``exp`` required; the role and the agent id come from configured claims.

A presented opaque token is hashed and the digest looked up: a token is never compared, stored or logged in clear.
Missing, unknown or invalid → 401 with ``WWW-Authenticate: Bearer``.

Authorization, one model for both services (``docs/security.md`` has the table):

* ``agent`` (with its ``agent_id``): its own agent, offers and assignments; contacts (and their customers) it holds
  or held an assignment or an open offer of; escalating a contact it holds; acknowledging or resolving the cases of
  targets whose group it belongs to;
* ``supervisor``: reads everything, sets any agent's presence, completes and moves contacts, links customers,
  cancels cases, reads the routing history;
* ``admin``: everything a supervisor may, and changes configuration and tokens.

What an agent may not see answers exactly as what does not exist (404, the same body), so ids cannot be probed; a
role that may never do a thing gets 403 (that says nothing about any id).
"""

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Self

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from kefu.logs import bind
from kefu.ops import ApiError

log = logging.getLogger(__name__)


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


RANK = {Role.AGENT: 0, Role.SUPERVISOR: 1, Role.ADMIN: 2}


class TokenConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    token: SecretStr | None = Field(
        default=None, min_length=16, description="The bearer token in clear (at least 16 characters); or sha256."
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="The token's SHA-256 as 64 lowercase hex digits (printf %s TOKEN | sha256sum): no secret in the "
        "file. The token itself must be long and random (secrets.token_urlsafe(32)).",
    )
    role: Role
    agent_id: str | None = Field(default=None, description="The agent an agent token acts as.")
    name: str = Field(default="", description="Who holds it, for the audit trail.")

    @model_validator(mode="after")
    def _one_secret_and_agent_tokens_name_their_agent(self) -> Self:
        if (self.token is None) == (self.sha256 is None):
            raise ValueError("give either token or sha256")
        if (self.role is Role.AGENT) != (self.agent_id is not None):
            raise ValueError("an agent token needs agent_id; other roles must not have one")
        return self

    def digest(self) -> bytes:
        return (
            bytes.fromhex(self.sha256) if self.sha256 else digest(self.token.get_secret_value() if self.token else "")
        )


class OidcConfig(BaseModel):
    """A company's single sign-on: JWT bearer tokens from one issuer."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    issuer: str = Field(
        min_length=1,
        description="The ``iss`` every token must carry.",
        examples=["https://sso.example.com/realms/kefu"],
    )
    jwks_url: str = Field(pattern=r"^https?://", description="Where the issuer publishes its signing keys (JWKS).")
    audience: str = Field(min_length=1, description="The ``aud`` every token must carry (kefu's client id).")
    role_claim: str = Field(
        default="kefu_role",
        description="The claim holding the role (a string or a list; dots reach into objects: realm_access.roles). "
        "The highest role found wins; a token with none is refused.",
    )
    roles: dict[str, Role] = Field(
        default_factory=dict,
        description="The issuer's role or group names -> kefu roles; without an entry, agent/supervisor/admin.",
        examples=[{"kefu-supervisors": "supervisor"}],
    )
    agent_id_claim: str = Field(default="preferred_username", description="The claim naming an agent's agent id.")
    name_claim: str = Field(default="name", description="The claim naming the person, for the audit trail.")
    algorithms: list[str] = Field(default=["RS256", "ES256"], min_length=1, description="Accepted signing algorithms.")
    leeway_seconds: float = Field(default=30, ge=0, le=300, description="Clock skew allowed on exp, nbf and iat.")
    jwks_cache_seconds: int = Field(default=300, ge=1, description="How long the issuer's keys are cached.")

    @model_validator(mode="after")
    def _asymmetric_only(self) -> Self:
        if any(not a.startswith(("RS", "ES", "PS", "Ed")) for a in self.algorithms):
            raise ValueError("algorithms: only asymmetric ones (RS*, PS*, ES*, EdDSA) make sense with a JWKS")
        return self


class AuthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tokens: list[TokenConfig] = Field(default_factory=list)
    oidc: OidcConfig | None = Field(default=None, description="Accept JWTs of this issuer too.")


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


def digest(token: str) -> bytes:
    """The SHA-256 of a token: what is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


StoredLookup = Callable[[bytes], Awaitable[Principal | None]]
"""Finds the principal of a token digest issued through the admin API (None: not issued, or revoked)."""


KEY_REFRESH_SECONDS = 60.0


class OidcVerifier:
    """Checks JWTs of one issuer against its JWKS (PyJWT's PyJWKClient: keys cached, refetched for a new key id)."""

    def __init__(self, config: OidcConfig) -> None:
        self._config = config
        self._jwks = jwt.PyJWKClient(config.jwks_url, cache_keys=True, lifespan=config.jwks_cache_seconds, timeout=5)
        self._next_refresh = 0.0
        self._unreachable = False

    async def principal(self, token: str) -> Principal:
        config = self._config
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in config.algorithms:
                raise _unauthorized(f"token algorithm must be one of {config.algorithms}")
            key = await self._key(header.get("kid"))
            claims = jwt.decode(
                token,
                key.key,
                algorithms=config.algorithms,
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            if not self._unreachable:  # once per outage, not per request
                log.warning("the OIDC issuer's signing keys cannot be fetched (%s)", type(exc).__name__)
            self._unreachable = True
            raise ApiError(
                503,
                "identity_provider_unavailable",
                "the issuer's signing keys cannot be fetched; retry later",
                headers={"Retry-After": "5"},
            ) from exc
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"invalid token: {exc}") from exc
        return self._principal(claims)

    async def _key(self, kid: object) -> jwt.PyJWK:
        """The issuer's key ``kid``: from the cached key set, which is fetched again for a key id not in it at most
        every KEY_REFRESH_SECONDS (tokens with made-up key ids must not turn into a flood of requests to the issuer)."""
        # PyJWKClient fetches with urllib: off the event loop
        keys = await asyncio.to_thread(self._jwks.get_signing_keys)
        found = next((k for k in keys if k.key_id == kid), None)
        if found is None and time.monotonic() >= self._next_refresh:
            self._next_refresh = time.monotonic() + KEY_REFRESH_SECONDS
            keys = await asyncio.to_thread(self._jwks.get_signing_keys, True)
            found = next((k for k in keys if k.key_id == kid), None)
        if self._unreachable:
            log.info("the OIDC issuer's signing keys can be fetched again")
            self._unreachable = False
        if found is None:
            raise _unauthorized("the token's key id is none of the issuer's signing keys")
        return found

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        config = self._config
        found = _claim(claims, config.role_claim)
        names = [found] if isinstance(found, str) else found if isinstance(found, list) else []
        roles = [r for r in (config.roles.get(n) or _role(n) for n in names if isinstance(n, str)) if r is not None]
        if not roles:
            raise _unauthorized(f"the token has no kefu role in its {config.role_claim!r} claim")
        role = max(roles, key=RANK.__getitem__)
        agent_id = None
        if role is Role.AGENT:
            agent_id = _claim(claims, config.agent_id_claim)
            if not isinstance(agent_id, str) or not agent_id:
                raise _unauthorized(f"an agent's token needs its agent id in the {config.agent_id_claim!r} claim")
        name = _claim(claims, config.name_claim)
        return Principal(role, agent_id, name if isinstance(name, str) and name else str(claims["sub"]))


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _role(name: str) -> Role | None:
    try:
        return Role(name)
    except ValueError:
        return None


class TokenRegistry:
    """The configured tokens (by digest), the tokens issued through the API, and the OIDC issuer, if any."""

    def __init__(self, config: AuthConfig, *, stored: StoredLookup | None = None) -> None:
        self._by_digest = {t.digest(): Principal(t.role, t.agent_id, t.name or t.role) for t in config.tokens}
        self._stored = stored
        self._oidc = OidcVerifier(config.oidc) if config.oidc is not None else None

    async def principal(self, authorization: str | None) -> Principal:
        if not authorization:
            raise _unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("Authorization must be 'Bearer <token>'")
        if self._oidc is not None and token.count(".") == 2:
            return await self._oidc.principal(token)
        key = digest(token)
        principal = self._by_digest.get(key)
        if principal is None and self._stored is not None:
            principal = await self._stored(key)
        if principal is None:
            raise _unauthorized("unknown token")
        return principal


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="kefu"'})


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "forbidden", detail)


# declares the scheme in the OpenAPI document; the header is read (and every error worded) by ``caller``
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A static or API-issued token, or a JWT of the configured OIDC issuer.",
)


async def authenticated(request: Request) -> Principal:
    """The authenticated caller of ``request``, in plain code: ``caller`` for FastAPI, and the routes served past
    FastAPI's parameter solving (``kefu.fastpath``) call it directly."""
    registry: TokenRegistry = request.app.state.tokens
    principal = await registry.principal(request.headers.get("authorization"))
    bind(agent_id=principal.agent_id)  # on the request's log lines, its access line included
    return principal


def supervising(who: Principal) -> Principal:
    """``who``, who must be a supervisor or admin."""
    if not who.supervises:
        raise forbidden(f"{who.role} tokens may not do this; a supervisor's may")
    return who


def administering(who: Principal) -> Principal:
    """``who``, who must be an admin."""
    if who.role is not Role.ADMIN:
        raise forbidden(f"{who.role} tokens may not do this; an admin's may")
    return who


async def caller(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The authenticated caller (a FastAPI dependency)."""
    return await authenticated(request)


async def supervisor(who: Annotated[Principal, Depends(caller)]) -> Principal:
    """The caller, who must be a supervisor or admin."""
    return supervising(who)


async def admin(who: Annotated[Principal, Depends(caller)]) -> Principal:
    """The caller, who must be an admin."""
    return administering(who)


async def _supervisor_of(request: Request) -> Principal:
    return supervising(await authenticated(request))


async def _admin_of(request: Request) -> Principal:
    return administering(await authenticated(request))


PLAIN: Mapping[Callable[..., Any], Callable[[Request], Awaitable[Principal]]] = MappingProxyType(
    {caller: authenticated, supervisor: _supervisor_of, admin: _admin_of}
)
"""Each dependency above, as a plain function of the request (``kefu.fastpath``)."""

Caller = Annotated[Principal, Depends(caller)]
Supervisor = Annotated[Principal, Depends(supervisor)]
Admin = Annotated[Principal, Depends(admin)]


# ---- the rules: each raises ``unknown`` (the caller's own "no such thing" error) where an agent may not see ----


def require_self(who: Principal, agent_id: str, unknown: Exception) -> None:
    """An agent's own things (its agent, presence, offers, assignments, event stream); supervisors see all."""
    if not who.may_act_as(agent_id):
        raise unknown


def require_reader(who: Principal, holders: Collection[str], unknown: Exception) -> None:
    """A contact (or a customer: via any of its contacts) is read by the agents in ``holders`` — those that hold or
    held an assignment, or have an open offer, of it — and by supervisors."""
    if not (who.supervises or (who.agent_id is not None and who.agent_id in holders)):
        raise unknown


def require_holder(who: Principal, holder: str | None, unknown: Exception) -> None:
    """An agent escalates (or transfers) only a contact it holds now; supervisors any."""
    if not (who.supervises or (who.agent_id is not None and who.agent_id == holder)):
        raise unknown


def require_case_member(who: Principal, members: Collection[str], unknown: Exception) -> None:
    """An escalation case is seen, acknowledged and resolved by its target group's ``members`` and supervisors."""
    require_reader(who, members, unknown)


def require_case_cancel(who: Principal) -> None:
    """Cancelling a case undoes an escalation someone decided: supervisors only."""
    if not who.supervises:
        raise forbidden("cancelling an escalation case is for supervisors")
