"""OIDC/JWT bearer tokens: a real JWKS endpoint on loopback serves the public key of a key pair made here; tokens
signed with it pass, every forgery, expiry and misconfiguration is a 401, and an unreachable issuer a 503."""

import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kefu.auth import AuthConfig, Caller, OidcConfig, TokenRegistry
from kefu.ops import install_error_handlers
from tests.integration.support import free_port, router_settings, server_in_thread, serving
from tools.assemble import router_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

ISSUER = "https://sso.example.test/realms/kefu"
AUDIENCE = "kefu-desktop"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "test-key-1"
FETCHES: list[float] = []  # when the JWKS endpoint was asked


def jwks() -> dict[str, Any]:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
    return {"keys": [{**public, "kid": KID, "alg": "RS256", "use": "sig"}]}


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    """The issuer's JWKS, served over real HTTP on loopback."""

    async def keys(_: Request) -> JSONResponse:
        FETCHES.append(time.monotonic())
        return JSONResponse(jwks())

    app = FastAPI(routes=[Route("/certs", keys)])
    with server_in_thread(app, free_port(), name="jwks") as url:
        yield f"{url}/certs"


def oidc(jwks_url: str) -> OidcConfig:
    return OidcConfig(
        issuer=ISSUER,
        jwks_url=jwks_url,
        audience=AUDIENCE,
        role_claim="realm_access.roles",
        roles={"kefu-supervisors": "supervisor"},  # type: ignore[dict-item]
        agent_id_claim="preferred_username",
    )


def token(*, key: Any = KEY, alg: str = "RS256", kid: str = KID, drop: tuple[str, ...] = (), **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 300,
        "preferred_username": "alice",
        "name": "王丽 Alice Wang",
        "realm_access": {"roles": ["offline_access", "agent"]},
        **claims,
    }
    for name in drop:
        body.pop(name)
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def app_with(config: AuthConfig) -> FastAPI:
    """A minimal service using the shared ``Caller`` dependency, as every kefu route does."""
    app = FastAPI()
    install_error_handlers(app)
    app.state.tokens = TokenRegistry(config)

    @app.get("/whoami")
    async def whoami(who: Caller) -> dict[str, Any]:
        return {"role": who.role, "agent_id": who.agent_id, "name": who.name}

    return app


async def whoami(app: FastAPI, bearer: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kefu.test") as client:
        return await client.get("/whoami", headers={"authorization": f"Bearer {bearer}"})


async def test_tokens_of_the_issuer_are_accepted_with_their_role_and_agent(jwks_url: str) -> None:
    app = app_with(AuthConfig(oidc=oidc(jwks_url)))
    agent = await whoami(app, token())
    assert agent.status_code == 200, agent.text
    assert agent.json() == {"role": "agent", "agent_id": "alice", "name": "王丽 Alice Wang"}
    lead = await whoami(app, token(realm_access={"roles": ["agent", "kefu-supervisors"]}, name=None))
    assert lead.json()["role"] == "supervisor" and lead.json()["agent_id"] is None  # the highest role wins


async def test_forged_expired_and_foreign_tokens_are_refused(jwks_url: str) -> None:
    app = app_with(AuthConfig(oidc=oidc(jwks_url)))
    public_pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    valid = token()
    head, _, signature = valid.split(".")
    forged_payload = jwt.utils.base64url_encode(
        b'{"iss":"' + ISSUER.encode() + b'","realm_access":{"roles":["admin"]}}'
    )
    attacks = {
        "expired": token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
        "another audience": token(aud="someone-else"),
        "another issuer": token(iss="https://evil.example.test"),
        "signed by another key, same kid": token(key=OTHER_KEY),
        "unknown kid": token(kid="not-there"),
        "alg none": jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": 2**40}, "", algorithm="none"),
        "HS256 keyed with the public key": _hs256_with(public_pem),
        "payload swapped": f"{head}.{forged_payload.decode()}.{signature}",
        "no exp": token(drop=("exp",)),
        "no role": token(realm_access={"roles": ["offline_access"]}),
        "agent without agent id": token(preferred_username=None),
        "garbage": "a.b.c",
    }
    for attack, bearer in attacks.items():
        answer = await whoami(app, bearer)
        assert answer.status_code == 401, (attack, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer"), attack
        assert bearer not in answer.text, attack


async def test_made_up_key_ids_do_not_flood_the_issuer(jwks_url: str) -> None:
    app = app_with(AuthConfig(oidc=oidc(jwks_url)))
    assert (await whoami(app, token())).status_code == 200
    before = len(FETCHES)
    for _ in range(50):
        assert (await whoami(app, token(kid=uuid.uuid4().hex))).status_code == 401
    assert len(FETCHES) - before <= 1  # one refetch a minute at most for a key id not in the cached set
    assert (await whoami(app, token())).status_code == 200


def _hs256_with(secret: bytes) -> str:
    """The classic algorithm confusion: an HMAC keyed with the public key (PyJWT refuses to make one)."""
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT","kid":"' + KID.encode() + b'"}')
    body = jwt.utils.base64url_encode(
        f'{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"x","exp":{2**40},"realm_access":{{"roles":["admin"]}}}}'.encode()
    )
    signature = hmac.new(secret, header + b"." + body, hashlib.sha256).digest()
    return (header + b"." + body + b"." + jwt.utils.base64url_encode(signature)).decode()


async def test_an_unreachable_issuer_is_a_503_to_retry_not_a_401() -> None:
    app = app_with(AuthConfig(oidc=oidc(f"http://127.0.0.1:{free_port()}/certs")))
    answer = await whoami(app, token())
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"]


@pytest.fixture
def sso_config_path(config_path: Path, jwks_url: str) -> Path:
    """The tests' configuration, its auth section accepting the loopback issuer's tokens too."""
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(
        text + f"  oidc: {{issuer: '{ISSUER}', jwks_url: '{jwks_url}', audience: {AUDIENCE}, "
        "role_claim: realm_access.roles, roles: {kefu-supervisors: supervisor}}\n",
        encoding="utf-8",
    )
    return config_path


async def test_the_router_serves_a_single_sign_on_agent_only_its_own_things(
    database_url: str, broker: EmbeddedKafka, sso_config_path: Path
) -> None:
    async with serving(router_app(router_settings(database_url, broker, sso_config_path))) as client:
        alice = {"authorization": f"Bearer {token()}"}
        lead = {"authorization": f"Bearer {token(realm_access={'roles': ['kefu-supervisors']})}"}
        assert (await client.get("/v1/agents/alice", headers=alice)).status_code == 200
        assert (await client.get("/v1/agents/bob", headers=alice)).status_code == 404
        assert (await client.get("/v1/agents", headers=alice)).status_code == 403
        assert (await client.get("/v1/agents", headers=lead)).status_code == 200
        assert (
            await client.get("/v1/agents", headers={"authorization": f"Bearer {token(key=OTHER_KEY)}"})
        ).status_code == 401
