"""Database errors of every engine ``kefu.db`` makes name what failed but carry no value: not the bound parameters,
not PostgreSQL's DETAIL (the row or key), not a quoted input, not the argument asyncpg could not encode; neither in
their text nor anywhere in their traceback chain. They are logged and copied into dead-letter reasons."""

import traceback
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from kefu import db, kafka
from services.router.adapters.orm import customers

pytestmark = pytest.mark.integration

PHONE = "+8613800138000"
TEXT = "王小明的订单 A-20261130-7731"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(database_url, pool_size=1)
    yield engine
    await engine.dispose()


async def failure(engine: AsyncEngine, statement: Any, *params: dict[str, Any]) -> tuple[DBAPIError, str]:
    """The error ``statement`` raises (after ``params`` but the last were applied) and its whole traceback."""
    async with engine.begin() as conn:
        for applied in params[:-1]:
            await conn.execute(statement, applied)
    with pytest.raises(DBAPIError) as raised:
        async with engine.begin() as conn:
            await conn.execute(statement, params[-1])
    return raised.value, "".join(traceback.format_exception(raised.value))


async def test_a_unique_violation_names_its_constraint_not_the_key(engine: AsyncEngine) -> None:
    row = {"external_id": PHONE, "display_name": TEXT}
    error, whole = await failure(engine, insert(customers), {"id": uuid.uuid4(), **row}, {"id": uuid.uuid4(), **row})
    for secret in (PHONE, TEXT, "DETAIL"):
        assert secret not in whole, whole
    assert "uq_customers_external_id" in str(error)
    assert "[SQL parameters hidden due to hide_parameters=True]" in str(error)
    # what callers decide on is kept: the SQLSTATE (23: not worth retrying)
    assert getattr(error.orig, "sqlstate", None) == "23505" and not kafka.transient(error)


async def test_text_that_cannot_be_encoded_is_not_repeated(engine: AsyncEngine) -> None:
    row = {"id": uuid.uuid4(), "external_id": "x", "display_name": f"{TEXT}\ud800"}
    error, whole = await failure(engine, insert(customers), row)
    assert TEXT not in whole and PHONE not in whole, whole
    assert "invalid input for query argument $3: value hidden (UnicodeEncodeError)" in str(error)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # asyncpg encodes the uuid itself and says which value it refused
        ("SELECT CAST(:value AS uuid)", "value hidden (ValueError)"),
        # PostgreSQL parses the text and quotes it back
        ("SELECT CAST(CAST(:value AS text) AS uuid)", 'invalid input syntax for type uuid: "***"'),
    ],
)
async def test_a_value_a_data_error_would_quote_is_hidden(engine: AsyncEngine, sql: str, expected: str) -> None:
    error, whole = await failure(engine, text(sql), {"value": PHONE})
    assert PHONE not in whole, whole
    assert expected in str(error)


async def test_an_encoding_error_keeps_its_harmless_words(engine: AsyncEngine) -> None:
    row = {"id": uuid.uuid4(), "external_id": "y", "display_name": f"{TEXT}\x00"}
    error, whole = await failure(engine, insert(customers), row)
    assert TEXT not in whole
    assert 'invalid byte sequence for encoding "UTF8": 0x00' in str(error)
