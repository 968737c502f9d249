"""The static tokens of the configuration file: kept as digests, given in clear or already hashed; and the rules."""

import hashlib
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from kefu.auth import (
    AuthConfig,
    OidcConfig,
    Principal,
    Role,
    TokenConfig,
    TokenRegistry,
    require_case_cancel,
    require_holder,
    require_reader,
)
from kefu.ops import ApiError

SECRET = "a-long-random-token-0123456789"


async def test_a_token_given_by_its_sha256_is_accepted_and_nothing_else_is() -> None:
    hashed = hashlib.sha256(SECRET.encode()).hexdigest()
    registry = TokenRegistry(
        AuthConfig.model_validate(
            {
                "tokens": [
                    {"sha256": hashed, "role": "agent", "agent_id": "alice"},
                    {"token": "another-long-token-abcdef", "role": "supervisor"},
                ]
            }
        )
    )
    assert await registry.principal(f"Bearer {SECRET}") == Principal(Role.AGENT, "alice", "agent")
    assert (await registry.principal("bearer  another-long-token-abcdef ")).role is Role.SUPERVISOR
    for bad in (None, "", "Bearer", "Bearer ", "Basic YTpi", f"Bearer {hashed}", f"Bearer {SECRET[:-1]}", SECRET):
        with pytest.raises(ApiError) as refused:
            await registry.principal(bad)
        assert refused.value.status == 401 and refused.value.headers["WWW-Authenticate"].startswith("Bearer")
        assert SECRET not in refused.value.detail


@pytest.mark.parametrize(
    "entry",
    [
        {"role": "admin"},  # neither token nor sha256
        {"token": SECRET, "sha256": "0" * 64, "role": "admin"},  # both
        {"sha256": "XYZ", "role": "admin"},
        {"sha256": "A" * 64, "role": "admin"},  # lowercase hex only
        {"token": "short", "role": "admin"},
        {"token": SECRET, "role": "agent"},  # an agent token names its agent
        {"token": SECRET, "role": "supervisor", "agent_id": "alice"},
    ],
)
def test_malformed_token_entries_are_refused(entry: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        TokenConfig.model_validate(entry)


def test_only_asymmetric_algorithms_are_accepted_from_a_jwks() -> None:
    base = {"issuer": "https://sso.test", "jwks_url": "https://sso.test/certs", "audience": "kefu"}
    with pytest.raises(ValidationError):
        OidcConfig.model_validate({**base, "algorithms": ["RS256", "HS256"]})
    with pytest.raises(ValidationError):
        OidcConfig.model_validate({**base, "jwks_url": "file:///etc/passwd"})
    assert OidcConfig.model_validate(base).algorithms == ["RS256", "ES256"]


def test_the_rules_hide_what_an_agent_may_not_see_and_refuse_cancelling() -> None:
    alice = Principal(Role.AGENT, "alice", "Alice")
    lead = Principal(Role.SUPERVISOR, None, "Lead")
    unknown = LookupError("no contact x")
    require_reader(alice, {"alice", "bob"}, unknown)
    require_reader(lead, set(), unknown)
    require_holder(alice, "alice", unknown)
    refusals: list[Callable[[], None]] = [
        lambda: require_reader(alice, {"bob"}, unknown),
        lambda: require_holder(alice, "bob", unknown),
        lambda: require_holder(alice, None, unknown),
    ]
    for refuse in refusals:
        with pytest.raises(LookupError) as hidden:
            refuse()
        assert hidden.value is unknown
    require_case_cancel(lead)
    with pytest.raises(ApiError) as refused:
        require_case_cancel(alice)
    assert refused.value.status == 403
