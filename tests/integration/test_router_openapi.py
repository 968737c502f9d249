"""schemathesis over the router's OpenAPI: the real app on loopback, with a real PostgreSQL and Tansu behind it,
holding contacts that wait, are offered and assigned. Calls come from every role (supervisor, admin, and two
agents), generated with valid and invalid data, first one by one, then in sequences that follow the document's
links, so that offers, assignments, contacts and customers that exist are accepted, declined, completed,
transferred, moved and read. No answer may be a 5xx, and an answer the schema documents must match it."""

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case
from schemathesis.core.transport import Response

from tests.integration import fuzz_support as fz
from tests.integration.conftest import ADMIN_TOKEN, ALICE_TOKEN, BOB_TOKEN, CONFIG, SUPERVISOR_TOKEN
from tests.integration.support import (
    contact_event,
    eventually,
    free_port,
    publish_contacts,
    router_settings,
    server_in_thread,
)
from tools.assemble import router_app as create_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

STATELESS_EXAMPLES = 400  # spread over every operation
SCENARIOS, STEPS = 80, 8  # linked sequences: up to 640 calls; the file takes about 30 s on two loaded cores
# the token admin API is left to the one-off calls: schemathesis would start every linked sequence there, the
# only operations it finds sure to succeed from nothing
TOKENS_API = "^/v1/tokens"
TOKENS = [ALICE_TOKEN, SUPERVISOR_TOKEN, ALICE_TOKEN, ADMIN_TOKEN, BOB_TOKEN]  # alice holds the offers
STREAMS = r"/events$"  # Server-Sent Events never end: fuzzing them would only time out
WAITING = 12

OFFERS, ASSIGNMENTS = "GET /v1/agents/{agent_id}/offers", "GET /v1/agents/{agent_id}/assignments"
ACCEPT, ASSIGNMENT = "POST /v1/offers/{offer_id}/accept", "GET /v1/assignments/{assignment_id}"
CONTACT = "GET /v1/contacts/{contact_id}"
# links schemathesis does not infer: offers and assignments name their contact, a contact its customer
LINKS = [
    *(
        (source, target, "contact_id", pointer)
        for source, pointer in ((OFFERS, "/*"), (ASSIGNMENTS, "/*"), (ACCEPT, ""), (ASSIGNMENT, ""))
        for target in (CONTACT, "POST /v1/contacts/{contact_id}/move")
    ),
    (CONTACT, "GET /v1/customers/{customer_id}", "customer_id", ""),
    (ACCEPT, "POST /v1/assignments/{assignment_id}/complete", "assignment_id", ""),
    (ACCEPT, "POST /v1/assignments/{assignment_id}/transfer", "assignment_id", ""),
]
# and alice's desktop: a scenario of any role may go from the queues (a start every role may call) to alice's offers.
# Without it the walk reads them only after a supervisor or admin listed the agents (an agent may not: 403) and
# picked alice of three, in 2 to 4 of the 80 scenarios, and whether one then answers an offer it read is the luck of
# the seeded draws, which any change to the document deals again (2 of 6 seeds did, typed or untyped alike)
QUEUES = "GET /v1/queues"


@pytest.fixture
async def router_url(database_url: str, broker: EmbeddedKafka, tmp_path: Path) -> AsyncIterator[str]:
    config = tmp_path / "kefu.yaml"  # offers that stay open long enough for a scenario to accept them
    config.write_text(CONFIG.replace("offer_timeout_seconds: 1", "offer_timeout_seconds: 600"), encoding="utf-8")
    app = create_app(router_settings(database_url, broker, config))
    with server_in_thread(app, free_port(), lifespan="on", name="router") as url:
        await publish_contacts(broker.bootstrap, *(contact_event(f"fuzz-{n}") for n in range(WAITING)))

        async with httpx.AsyncClient(base_url=url, headers=_bearer(SUPERVISOR_TOKEN), timeout=5) as client:

            async def offered() -> bool:
                offers = await client.get("/v1/agents/alice/offers")
                return offers.status_code == 200 and bool(offers.json())

            await eventually(offered)  # alice has offers; the other contacts wait
        yield url


def _offeree(case: Case[Any], token: str) -> str:
    """Offers are personal: whoever read one, its agent (alice, who holds them all) answers it; other roles'
    refusals are the one-off calls' part."""
    return ALICE_TOKEN if case.path.startswith("/v1/offers/") else token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _declared(schema: Mapping[str, Any]) -> bool:
    """A declared model (a component), or a list of them: not a bare object of anything."""
    return "$ref" in schema or (schema.get("type") == "array" and "$ref" in schema.get("items", {}))


def test_every_json_answer_has_a_declared_schema(router_url: str) -> None:
    document = fz.fetch_document(router_url)
    answers = {
        f"{method.upper()} {path} {status}": body.get("schema", {})
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status.startswith("2")
        for media, body in response.get("content", {}).items()
        if media == "application/json"
    }
    assert len(answers) >= 20  # the router's, the tokens' and the health checks' answers
    assert {name for name, schema in answers.items() if not _declared(schema)} == set()


def test_no_operation_answers_with_a_server_error(router_url: str) -> None:
    document = fz.fetch_document(router_url)
    for link in LINKS:
        fz.add_link(document, *link)
    fz.add_link(document, QUEUES, OFFERS, "agent_id", value="alice")
    fz.pin_path_parameter(document, "agent_id", ["alice", "bob", "chen", "alice", "no-such-agent"])
    schema = schemathesis.openapi.from_dict(document).exclude(path_regex=STREAMS)
    # linked sequences first, while alice is available with offers; the one-off calls then change agents at will
    offers_read: set[str] = set()
    offers_answered: set[str] = set()

    def send(case: Case[Any], kwargs: Mapping[str, Any]) -> Response:
        response = case.call(base_url=router_url, timeout=10, **kwargs)
        if case.path == "/v1/agents/{agent_id}/offers" and response.status_code == 200:
            offers_read.update(offer["offer_id"] for offer in response.json())
        elif case.path.startswith("/v1/offers/") and case.path_parameters:
            offers_answered.add(str(case.path_parameters["offer_id"]))
        return response

    linked = schema.exclude(path_regex=TOKENS_API)
    stateful = fz.fuzz_stateful(
        linked, base_url=router_url, tokens=TOKENS, scenarios=SCENARIOS, steps=STEPS, send=send, caller=_offeree
    )
    stateless = fz.fuzz_stateless(schema, base_url=router_url, tokens=TOKENS, examples=STATELESS_EXAMPLES)

    assert not stateless.problems(), stateless.problems()
    assert not stateful.problems(), stateful.problems()
    operations = {f"{op.method.upper()} {op.path}" for op in (r.ok() for r in schema.get_all_operations())}  # type: ignore[union-attr]
    assert stateless.seen.keys() == operations, f"never called: {sorted(operations - stateless.seen.keys())}"
    # the linked sequences reached objects that exist: offers read, then answered by the ids read
    assert offers_read & offers_answered, (sorted(offers_read), sorted(offers_answered))
    assert httpx.get(f"{router_url}/healthz", timeout=5).status_code == 200  # still serving
