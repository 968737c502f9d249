"""schemathesis over the escalation service's OpenAPI: the real app on loopback with a real PostgreSQL and Tansu,
called as a supervisor and as an admin. No answer may be a 5xx; a success must match the documented schema."""

import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning
from schemathesis import Case
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from kefu.embedded import EmbeddedKafka, free_port
from services.escalation.config import EscalationSettings
from services.escalation.entrypoints.app import create_app
from tests.integration.conftest import ADMIN_TOKEN, SUPERVISOR_TOKEN
from tests.integration.support import server_in_thread

pytestmark = pytest.mark.integration

EXAMPLES = 300
TIME_BOX_SECONDS = 45.0


@pytest.fixture
def escalation_url(database_url: str, broker: EmbeddedKafka, escalation_config_path: Path) -> Iterator[str]:
    port = free_port()
    app = create_app(
        EscalationSettings(
            database_url=database_url, kafka_bootstrap=broker.bootstrap, config_path=escalation_config_path
        )
    )
    with server_in_thread(app, port, lifespan="on", name="escalation") as url:
        yield url


def test_the_escalation_api_never_answers_with_a_server_error(escalation_url: str) -> None:
    supervisor = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}
    # one real case, so that the generated calls on existing cases (and their closed states) are reached too
    opened = httpx.post(
        f"{escalation_url}/v1/escalations",
        json={"contact_id": str(uuid.uuid4()), "target": "engineers", "reason": "seed"},
        headers=supervisor,
        timeout=10,
    )
    assert opened.status_code == 201, opened.text
    case_id = opened.json()["case_id"]
    schema = schemathesis.openapi.from_url(f"{escalation_url}/openapi.json")
    deadline = time.monotonic() + TIME_BOX_SECONDS
    answers: dict[str, set[int]] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(), token=st.sampled_from([SUPERVISOR_TOKEN, ADMIN_TOKEN]), seeded=st.booleans())
    def call(case: Case[Any], token: str, seeded: bool) -> None:
        if time.monotonic() > deadline:
            return
        if seeded and case.path_parameters and "case_id" in case.path_parameters:
            case.path_parameters["case_id"] = case_id
        response = case.call(base_url=escalation_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        answers.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
        )
        if response.status_code < 400:
            case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HypothesisDeprecationWarning)  # schemathesis draws from ``random``
        call()
    assert {"POST /v1/escalations", "GET /v1/escalations/{case_id}", "POST /v1/escalations/{case_id}/{action}"} <= set(
        answers
    ), answers
    assert any(code < 300 for codes in answers.values() for code in codes)
    assert httpx.get(f"{escalation_url}/healthz", timeout=5).status_code == 200
