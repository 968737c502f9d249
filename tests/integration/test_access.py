"""Least privilege, one model: every route of the router and the escalation service, tried by every role.

The table is checked against the apps' OpenAPI documents: a new route without an entry fails the test. Roles:
anonymous, alice (the agent that holds the contacts: "agent self"), bob (another agent, holds nothing), chen (an
engineer: a member of the ``engineers`` target's group), a supervisor and an admin. Both services run over real HTTP
on the test's PostgreSQL and broker; the contacts arrive on the contacts topic as the channels service sends them.
"""

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import RoutingEventType
from services.escalation.config import EscalationSettings
from tests.integration.conftest import ADMIN_TOKEN, ALICE_TOKEN, BOB_TOKEN, SUPERVISOR_TOKEN
from tests.integration.support import (
    contact_event,
    eventually,
    free_port,
    publish_contacts,
    router_settings,
    server_in_thread,
)
from tools.assemble import escalation_app, router_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

CHEN_TOKEN = "test-token-chen-000000000"
TOKENS = {
    "alice": ALICE_TOKEN,
    "bob": BOB_TOKEN,
    "chen": CHEN_TOKEN,
    "supervisor": SUPERVISOR_TOKEN,
    "admin": ADMIN_TOKEN,
}
ROLES = ("anonymous", *TOKENS)
AGENTS = ("alice", "bob", "chen")


def headers(role: str) -> dict[str, str]:
    return {} if role == "anonymous" else {"authorization": f"Bearer {TOKENS[role]}"}


def every(status: int, **others: int) -> dict[str, int]:
    """``status`` for every role but anonymous (401), unless named."""
    return {"anonymous": 401, **dict.fromkeys(TOKENS, status), **others}


SELF_ONLY = every(404, alice=200, supervisor=200, admin=200)
SUPERVISORS = every(403, supervisor=200, admin=200)
PUBLIC = dict.fromkeys(ROLES, 200)


@dataclass
class Probe:
    """One request per role, in the order of ``expect``; ``{name}`` in the path is an id known by then."""

    service: str
    method: str
    template: str
    expect: dict[str, int]
    path: str = ""
    body: Any = None
    yaml: str | None = None
    keep: tuple[str, str] | None = None  # (name, field): remember the first successful answer's field as an id

    def url(self, ids: dict[str, str]) -> str:
        return (self.path or self.template).format(**ids)


def table(routing_yaml: str) -> list[Probe]:
    """The route x role table, reads first; ids: contacts c0..c3, e1, offers o2 o3, assignments a0 a1, customer k."""
    r, e = "router", "escalation"
    alice = {"name": "Alice", "groups": ["tier1"], "skills": {"presales": 4}, "capacity": {"webchat": 5}}
    status = {"presence": "available"}
    escalate = {"contact_id": "{e1}", "target": "engineers", "reason": "E4 again"}
    issued = {"role": "agent", "agent_id": "bob", "name": "Bob's second desk"}
    return [
        *(Probe(s, "GET", p, PUBLIC) for s in (r, e) for p in ("/healthz", "/readyz", "/metrics")),
        Probe(r, "GET", "/v1/agents", SUPERVISORS),
        *(
            probe
            for s, kept in ((r, "t_router"), (e, "t_escalation"))
            for probe in (
                Probe(s, "POST", "/v1/tokens", every(403, admin=201), body=issued, keep=(kept, "token_id")),
                Probe(s, "GET", "/v1/tokens", every(403, admin=200)),
                Probe(s, "DELETE", "/v1/tokens/{token_id}", every(403, admin=204), f"/v1/tokens/{{{kept}}}"),
            )
        ),
        Probe(r, "GET", "/v1/agents/{agent_id}", SELF_ONLY, "/v1/agents/alice"),
        Probe(r, "GET", "/v1/agents/{agent_id}/offers", SELF_ONLY, "/v1/agents/alice/offers"),
        Probe(r, "GET", "/v1/agents/{agent_id}/assignments", SELF_ONLY, "/v1/agents/alice/assignments"),
        Probe(r, "GET", "/v1/agents/{agent_id}/events", SELF_ONLY, "/v1/agents/alice/events"),
        Probe(r, "GET", "/v1/assignments/{assignment_id}", SELF_ONLY, "/v1/assignments/{a1}"),
        Probe(r, "GET", "/v1/contacts/{contact_id}", SELF_ONLY, "/v1/contacts/{c1}"),
        Probe(r, "GET", "/v1/contacts/{contact_id}", SELF_ONLY, "/v1/contacts/{c2}"),  # an open offer of alice's
        Probe(r, "GET", "/v1/contacts/{contact_id}", every(404), "/v1/contacts/{unknown}"),
        Probe(r, "GET", "/v1/customers/{customer_id}", SELF_ONLY, "/v1/customers/{k}"),
        Probe(r, "GET", "/v1/customers/{customer_id}", every(404), "/v1/customers/{unknown}"),
        Probe(r, "GET", "/v1/queues", every(200)),
        Probe(r, "GET", "/v1/queues/{queue_id}/stats", every(200), "/v1/queues/presales/stats"),
        Probe(r, "GET", "/v1/config", SUPERVISORS),
        Probe(r, "PUT", "/v1/agents/{agent_id}/status", SELF_ONLY, "/v1/agents/alice/status", status),
        Probe(r, "PUT", "/v1/agents/{agent_id}", every(403, admin=200), "/v1/agents/alice", alice),
        Probe(
            r,
            "POST",
            "/v1/customers/{customer_id}/identities",
            SUPERVISORS,
            "/v1/customers/{k}/identities",
            {"channel": "webchat", "platform_id": "visitor-linked"},
        ),
        Probe(
            r, "PUT", "/v1/customers/{customer_id}/profile", SUPERVISORS, "/v1/customers/{k}/profile", {"tier": "vip"}
        ),
        # offers are personal: a supervisor may not answer one (403: says nothing about the offer)
        Probe(
            r,
            "POST",
            "/v1/offers/{offer_id}/accept",
            every(404, supervisor=403, admin=403, alice=200),
            "/v1/offers/{o2}/accept",
        ),
        Probe(
            r,
            "POST",
            "/v1/offers/{offer_id}/decline",
            every(404, supervisor=403, admin=403, alice=200),
            "/v1/offers/{o3}/decline",
        ),
        # the first allowed caller completes or transfers it; then it is no open assignment, for everyone
        Probe(
            r,
            "POST",
            "/v1/assignments/{assignment_id}/complete",
            every(404, alice=200),
            "/v1/assignments/{a0}/complete",
        ),
        Probe(
            r,
            "POST",
            "/v1/assignments/{assignment_id}/transfer",
            {"anonymous": 401, "bob": 404, "chen": 404, "supervisor": 200, "alice": 404, "admin": 404},
            "/v1/assignments/{a1}/transfer",
            {"queue_id": "returns"},
        ),
        Probe(
            r,
            "POST",
            "/v1/contacts/{contact_id}/move",
            SUPERVISORS,
            "/v1/contacts/{c3}/move",
            {"queue_id": "returns", "reason": "table"},
        ),
        Probe(r, "PUT", "/v1/config", every(403, admin=200), yaml=routing_yaml),
        Probe(e, "GET", "/v1/routing-events", SUPERVISORS, "/v1/routing-events?limit=1000"),
        # an agent escalates only a contact it holds; alice's colleagues cannot even tell it exists
        Probe(
            e,
            "POST",
            "/v1/escalations",
            every(404, alice=201, supervisor=409, admin=409),
            body=escalate,
            keep=("k1", "case_id"),
        ),
        Probe(
            e,
            "POST",
            "/v1/escalations",
            every(404, supervisor=201, admin=409),  # c3: offered, declined, moved; nobody holds it
            body={**escalate, "contact_id": "{c3}", "target": "crisis"},
            keep=("k2", "case_id"),
        ),
        # a contact nobody holds, not even seen here yet: a supervisor may still escalate it
        Probe(
            e,
            "POST",
            "/v1/escalations",
            every(404, supervisor=201, admin=409),
            body={**escalate, "contact_id": "{unknown}"},
        ),
        Probe(e, "GET", "/v1/escalations", every(200)),
        Probe(
            e,
            "GET",
            "/v1/escalations/{case_id}",
            every(404, chen=200, supervisor=200, admin=200),
            "/v1/escalations/{k1}",
        ),
        Probe(e, "GET", "/v1/escalations/{case_id}", every(404), "/v1/escalations/{unknown}"),
        # a member of the target's group acknowledges and resolves; cancelling is for supervisors
        Probe(
            e,
            "POST",
            "/v1/escalations/{case_id}/{action}",
            {"anonymous": 401, "alice": 404, "bob": 404, "chen": 403},
            "/v1/escalations/{k1}/cancel",
        ),
        Probe(
            e,
            "POST",
            "/v1/escalations/{case_id}/{action}",
            {"bob": 404, "chen": 200},
            "/v1/escalations/{k1}/acknowledge",
        ),
        Probe(
            e, "POST", "/v1/escalations/{case_id}/{action}", {"alice": 404, "chen": 200}, "/v1/escalations/{k1}/resolve"
        ),
        Probe(
            e,
            "POST",
            "/v1/escalations/{case_id}/{action}",
            {"chen": 404, "bob": 404, "supervisor": 200, "admin": 409},
            "/v1/escalations/{k2}/cancel",
        ),
    ]


def configured(config_path: Path) -> Path:
    """The escalation tests' configuration: offers wait for the test, alice has room for five contacts, and chen has
    a token kept only as its SHA-256 in the file."""
    text = config_path.read_text(encoding="utf-8")
    text = text.replace("offer_timeout_seconds: 1", "offer_timeout_seconds: 120").replace(
        "{webchat: 2}", "{webchat: 5}"
    )
    chen = hashlib.sha256(CHEN_TOKEN.encode()).hexdigest()
    text += f"    - {{sha256: {chen}, role: agent, agent_id: chen, name: Chen}}\n"
    config_path.write_text(text, encoding="utf-8")
    return config_path


@contextlib.asynccontextmanager
async def services(
    database_url: str, broker: EmbeddedKafka, config_path: Path
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """The router and the escalation service over real HTTP (the desktop stream is endless)."""
    esc = EscalationSettings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        config_path=config_path,
        consumer_group=f"esc-{uuid.uuid4().hex[:8]}",
    )
    with contextlib.ExitStack() as stack:
        router_url = stack.enter_context(
            serve(router_app(router_settings(database_url, broker, config_path)), "router")
        )
        escalation_url = stack.enter_context(serve(escalation_app(esc), "escalation"))
        async with (
            httpx.AsyncClient(base_url=router_url, timeout=10) as router,
            httpx.AsyncClient(base_url=escalation_url, timeout=10) as escalation,
        ):
            yield {"router": router, "escalation": escalation}


@contextlib.contextmanager
def serve(app: Any, name: str) -> Iterator[str]:
    with server_in_thread(app, free_port(), lifespan="on", name=name) as url:
        yield url


async def setup(clients: dict[str, httpx.AsyncClient], bootstrap: str) -> dict[str, str]:
    """Five contacts offered to alice: she accepts c0, c1 and e1 and leaves c2, c3 pending; the escalation service
    has seen e1 assigned to her."""
    router = clients["router"]
    ids: dict[str, str] = {"unknown": str(uuid.uuid4())}
    offers: dict[str, str] = {}
    for name in ("c0", "c1", "e1", "c2", "c3"):
        event = contact_event(f"access-{name}-{uuid.uuid4().hex[:6]}", text="你好")
        ids[name] = str(event.event_id)
        await publish_contacts(bootstrap, event)

        async def offered(contact: str = ids[name]) -> str | None:
            answer = await router.get("/v1/agents/alice/offers", headers=headers("alice"))
            return next((o["offer_id"] for o in answer.json() if o["contact_id"] == contact), None)

        offers[name] = await eventually(offered)
    ids["o2"], ids["o3"] = offers["c2"], offers["c3"]
    for name, assignment in (("c0", "a0"), ("c1", "a1"), ("e1", "ae")):
        accepted = await router.post(f"/v1/offers/{offers[name]}/accept", headers=headers("alice"))
        assert accepted.status_code == 200, accepted.text
        ids[assignment] = accepted.json()["assignment_id"]
    contact = await router.get(f"/v1/contacts/{ids['c1']}", headers=headers("supervisor"))
    ids["k"] = contact.json()["customer_id"]

    async def seen_assigned() -> bool:
        history = await clients["escalation"].get(
            "/v1/routing-events", params={"contact_id": ids["e1"]}, headers=headers("supervisor")
        )
        return any(e["type"] == RoutingEventType.ASSIGNED for e in history.json())

    await eventually(seen_assigned)
    return ids


@dataclass
class Scene:
    """Both services running, with what ``setup`` made."""

    clients: dict[str, httpx.AsyncClient]
    ids: dict[str, str]
    config_path: Path


@pytest.fixture
async def scene(database_url: str, broker: EmbeddedKafka, escalation_config_path: Path) -> AsyncIterator[Scene]:
    config_path = configured(escalation_config_path)
    async with services(database_url, broker, config_path) as clients:
        yield Scene(clients, await setup(clients, broker.bootstrap), config_path)


async def ask(client: httpx.AsyncClient, probe: Probe, role: str, ids: dict[str, str]) -> httpx.Response:
    url = probe.url(ids)
    if probe.template.endswith("/events"):  # an endless stream: the status and type, then hang up
        async with client.stream("GET", url, headers=headers(role)) as streamed:
            if streamed.status_code == 200:
                assert streamed.headers["content-type"].startswith("text/event-stream")
            else:
                await streamed.aread()
            return streamed
    if probe.yaml is not None:
        kind = {"content-type": "application/yaml"}
        return await client.request(probe.method, url, content=probe.yaml, headers={**headers(role), **kind})
    body = None if probe.body is None else _filled(probe.body, ids)
    return await client.request(probe.method, url, json=body, headers=headers(role))


def _filled(body: Any, ids: dict[str, str]) -> Any:
    if isinstance(body, dict):
        return {k: _filled(v, ids) for k, v in body.items()}
    return body.format(**ids) if isinstance(body, str) else body


def routing_section(config_path: Path) -> str:
    """The configuration's routing section, as PUT /v1/config takes it."""
    config = config_path.read_text(encoding="utf-8")
    return config[config.index("routing:") : config.index("auth:")]


def routes() -> set[tuple[str, str, str]]:
    """Every (service, method, path template) the apps' OpenAPI documents declare."""
    found = set()
    for service, app in (("router", router_app()), ("escalation", escalation_app())):
        for path, operations in app.openapi()["paths"].items():
            found |= {(service, method.upper(), path) for method in operations}
    return found


async def test_every_route_answers_every_role_as_the_table_says(scene: Scene) -> None:
    probes = table(routing_section(scene.config_path))
    clients, ids = scene.clients, scene.ids
    declared = routes()
    tabled = {(p.service, p.method, p.template) for p in probes}
    assert declared - tabled == set(), "routes without an entry in the access table"
    assert tabled - declared == set(), "table entries for routes that do not exist"
    for route in declared:  # every role is tried on every route
        tried = {role for p in probes if (p.service, p.method, p.template) == route for role in p.expect}
        assert tried == set(ROLES), (route, set(ROLES) - tried)

    wrong = []
    for probe in probes:
        for role, expected in probe.expect.items():
            answer = await ask(clients[probe.service], probe, role, ids)
            if answer.status_code != expected:
                wrong.append((probe.method, probe.url(ids), role, expected, answer.status_code, answer.text[:200]))
            if probe.keep and answer.is_success and probe.keep[0] not in ids:
                ids[probe.keep[0]] = answer.json()[probe.keep[1]]
            assert answer.status_code < 500, answer.text
    assert wrong == [], "\n".join(map(str, wrong))

    # the lists an agent gets hold only what it may act on: chen the engineers' cases, alice and bob none
    escalation = clients["escalation"]
    every_case = (await escalation.get("/v1/escalations", headers=headers("supervisor"))).json()
    engineers = {c["case_id"] for c in every_case if c["target"] == "engineers"}
    assert ids["k1"] in engineers and ids["k2"] not in engineers
    for role, theirs in (("alice", set()), ("bob", set()), ("chen", engineers)):
        listed = (await escalation.get("/v1/escalations", headers=headers(role))).json()
        assert {c["case_id"] for c in listed} == theirs, role


async def test_what_an_agent_may_not_see_answers_exactly_as_what_does_not_exist(scene: Scene) -> None:
    clients, ids = scene.clients, scene.ids
    case = await clients["escalation"].post(
        "/v1/escalations",
        json={"contact_id": ids["e1"], "target": "crisis", "reason": "fire"},
        headers=headers("alice"),
    )
    assert case.status_code == 201, case.text
    ids["case"] = case.json()["case_id"]
    unknown = str(uuid.uuid4())
    pairs = [
        ("router", "GET", "/v1/contacts/{}", ids["c1"]),
        ("router", "GET", "/v1/contacts/{}", ids["c2"]),  # an open offer of alice's
        ("router", "GET", "/v1/customers/{}", ids["k"]),
        ("router", "GET", "/v1/assignments/{}", ids["a1"]),
        ("router", "POST", "/v1/assignments/{}/complete", ids["a1"]),
        ("router", "POST", "/v1/offers/{}/accept", ids["o3"]),
        ("router", "POST", "/v1/offers/{}/decline", ids["o3"]),
        ("router", "GET", "/v1/agents/{}", "alice"),
        ("router", "GET", "/v1/agents/{}/offers", "alice"),
        ("escalation", "GET", "/v1/escalations/{}", ids["case"]),
        ("escalation", "POST", "/v1/escalations/{}/cancel", ids["case"]),
    ]
    for service, method, template, real in pairs:
        fake = "nobody" if real == "alice" else unknown
        hidden = await clients[service].request(method, template.format(real), headers=headers("bob"))
        absent = await clients[service].request(method, template.format(fake), headers=headers("bob"))
        assert hidden.status_code == absent.status_code == 404, (template, hidden.text, absent.text)
        assert hidden.json() == {
            k: v.replace(fake, real) if isinstance(v, str) else v for k, v in absent.json().items()
        }, template
    # and alice's contact is still hers: nothing bob tried changed it
    mine = await clients["router"].get(f"/v1/assignments/{ids['a1']}", headers=headers("alice"))
    assert mine.status_code == 200


async def test_an_agent_escalates_only_what_it_holds_now(scene: Scene) -> None:
    """Seen: an agent escalated a colleague's assigned contact to the crisis group, then cancelled that case."""
    clients, ids = scene.clients, scene.ids
    router, escalation = clients["router"], clients["escalation"]
    crisis = {"contact_id": ids["e1"], "target": "crisis", "reason": "媒体曝光"}
    assert (await escalation.post("/v1/escalations", json=crisis, headers=headers("bob"))).status_code == 404
    # once alice gave it away (a transfer), she no longer holds it either
    moved = await router.post(
        f"/v1/assignments/{ids['ae']}/transfer", json={"queue_id": "returns"}, headers=headers("alice")
    )
    assert moved.status_code == 200, moved.text

    async def seen_transferred() -> bool:
        history = await escalation.get(
            "/v1/routing-events", params={"contact_id": ids["e1"]}, headers=headers("supervisor")
        )
        return any(e["type"] == RoutingEventType.TRANSFERRED for e in history.json())

    await eventually(seen_transferred)
    assert (await escalation.post("/v1/escalations", json=crisis, headers=headers("alice"))).status_code == 404
    mine = await escalation.get("/v1/escalations", params={"contact_id": ids["e1"]}, headers=headers("supervisor"))
    assert mine.json() == []  # nothing bob or alice tried opened a case
    opened = await escalation.post("/v1/escalations", json=crisis, headers=headers("supervisor"))
    assert opened.status_code == 201, opened.text
    cancel = f"/v1/escalations/{opened.json()['case_id']}/cancel"
    for role in ("alice", "bob", "chen"):
        assert (await escalation.post(cancel, headers=headers(role))).status_code == 404
    assert (await escalation.get(f"/v1/escalations/{opened.json()['case_id']}", headers=headers("supervisor"))).json()[
        "status"
    ] == "open"


async def test_tokens_issued_through_the_api_work_on_both_services_until_revoked(
    database_url: str, broker: EmbeddedKafka, escalation_config_path: Path
) -> None:
    config_path = configured(escalation_config_path)
    async with services(database_url, broker, config_path) as clients:
        router, escalation = clients["router"], clients["escalation"]
        body = {"role": "supervisor", "name": "夜班主管 night lead", "expires_in_days": 30}
        issued = await router.post("/v1/tokens", json=body, headers=headers("admin"))
        assert issued.status_code == 201, issued.text
        secret = issued.json()["token"]
        lead = {"authorization": f"Bearer {secret}"}
        assert (await router.get("/v1/agents", headers=lead)).status_code == 200
        assert (await escalation.get("/v1/routing-events", headers=lead)).status_code == 200
        listed = await escalation.get("/v1/tokens", headers=headers("admin"))
        assert [t["name"] for t in listed.json()] == [body["name"]]
        assert secret not in listed.text and "sha256" not in listed.text  # shown once, when issued
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                stored = (await conn.execute(text("SELECT sha256 FROM auth.api_tokens"))).scalar_one()
        finally:
            await engine.dispose()
        assert bytes(stored) == hashlib.sha256(secret.encode()).digest()
        refused = [
            {"role": "agent", "name": "no agent id"},
            {"role": "admin", "agent_id": "alice", "name": "an admin as alice"},
            {"role": "root", "name": "x"},
            {"role": "agent", "agent_id": "alice", "name": "x", "expires_in_days": 0},
        ]
        for bad in refused:
            assert (await router.post("/v1/tokens", json=bad, headers=headers("admin"))).status_code == 422, bad
        as_json = {**headers("admin"), "content-type": "application/json"}
        surrogate = rb'{"role": "admin", "name": "\ud800 night"}'
        assert (await router.post("/v1/tokens", content=surrogate, headers=as_json)).status_code == 422
        odd = rb'{"role": "agent", "agent_id": "a\u0000b", "name": "night\u0000"}'  # stored, never a 500
        stored_odd = await router.post("/v1/tokens", content=odd, headers=as_json)
        assert stored_odd.status_code == 201, stored_odd.text
        assert stored_odd.json()["agent_id"] == "a\ufffdb"
        assert (await router.post("/v1/tokens", json=body, headers=lead)).status_code == 403  # supervisors cannot
        revoked = await escalation.delete(f"/v1/tokens/{issued.json()['token_id']}", headers=headers("admin"))
        assert revoked.status_code == 204
        assert (await router.get("/v1/agents", headers=lead)).status_code == 401  # at once, on both
        assert (await escalation.get("/v1/routing-events", headers=lead)).status_code == 401
        again = await router.delete(f"/v1/tokens/{issued.json()['token_id']}", headers=headers("admin"))
        assert again.status_code == 404
