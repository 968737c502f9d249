"""schemathesis over the router's OpenAPI: the real app on loopback, with a real PostgreSQL and Tansu behind it,
called as a supervisor and as an admin with generated parameters and bodies. No answer may be a 5xx, and an answer
the schema documents must match it."""

import time
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
from services.router.config import RouterSettings
from services.router.entrypoints.app import create_app
from tests.integration.conftest import ADMIN_TOKEN, SUPERVISOR_TOKEN
from tests.integration.support import server_in_thread

pytestmark = pytest.mark.integration

EXAMPLES_PER_RUN = 2000  # spread over every operation; about 30 s on a laptop
TIME_BOX_SECONDS = 80.0
STREAMS = r"/events$"  # Server-Sent Events never end: fuzzing them would only time out


@pytest.fixture
def router_url(database_url: str, broker: EmbeddedKafka, config_path: Path) -> Iterator[str]:
    port = free_port()
    settings_ = RouterSettings(
        database_url=database_url, kafka_bootstrap=broker.bootstrap, config_path=config_path, port=port
    )
    with server_in_thread(create_app(settings_), port, lifespan="on", name="router") as url:
        yield url


def test_no_operation_answers_with_a_server_error(router_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{router_url}/openapi.json").exclude(path_regex=STREAMS)
    deadline = time.monotonic() + TIME_BOX_SECONDS
    seen: dict[str, set[int]] = {}
    server_errors: dict[str, str] = {}  # operation -> the first request that got a 5xx, to reproduce it

    @settings(
        max_examples=EXAMPLES_PER_RUN,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=schema.as_strategy(), token=st.sampled_from([SUPERVISOR_TOKEN, ADMIN_TOKEN]))
    def call(case: Case[Any], token: str) -> None:
        if time.monotonic() > deadline:
            return
        response = case.call(base_url=router_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
        if response.status_code >= 500:
            server_errors.setdefault(f"{case.method} {case.path}", case.as_curl_command())
            return
        if response.status_code < 400:
            case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])

    with warnings.catch_warnings():
        # schemathesis's generators draw from ``random`` inside strategies, which Hypothesis now deprecates
        warnings.simplefilter("ignore", HypothesisDeprecationWarning)
        call()
    assert not server_errors, "5xx answers:\n" + "\n".join(server_errors.values())
    operations = {f"{op.method.upper()} {op.path}" for op in (r.ok() for r in schema.get_all_operations())}  # type: ignore[union-attr]
    assert seen.keys() == operations, f"never called: {sorted(operations - seen.keys())}"
    assert any(code < 300 for codes in seen.values() for code in codes)
    assert httpx.get(f"{router_url}/healthz", timeout=5).status_code == 200  # still serving
