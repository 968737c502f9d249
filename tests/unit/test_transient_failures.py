"""Which handler failures the consumer loop retries for ever (the infrastructure's), which it dead-letters at once
(the record's own), and how a dead letter names them: by class and SQLSTATE, never by the data."""

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, StatementError

from contracts import Message
from kefu.failures import permanent, summary
from kefu.kafka import transient


class _Driver(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _db(sqlstate: str | None, *, invalidated: bool = False) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, _Driver(sqlstate), connection_invalidated=invalidated)


def test_the_network_the_database_going_away_and_deadlocks_are_transient() -> None:
    assert transient(ConnectionRefusedError("refused"))
    assert transient(TimeoutError())
    assert transient(_db("08006"))  # connection failure
    assert transient(_db("40P01"))  # deadlock detected
    assert transient(_db("40001"))  # serialization failure
    assert transient(_db("57P01"))  # admin shutdown
    assert transient(_db("23505", invalidated=True))
    assert transient(_db(None))  # no code: cannot tell, so not the record's fault


def test_what_the_record_itself_causes_is_not() -> None:
    assert not transient(ValueError("bad"))
    assert not transient(KeyError("queue"))
    assert not transient(_db("23503"))  # foreign key violation
    assert not transient(_db("22001"))  # value too long


def test_what_fails_again_on_every_retry_is_permanent() -> None:
    assert permanent(_db("22021")) == "data_error"  # NUL in text
    assert permanent(_db("22P05")) == "data_error"  # NUL in jsonb
    assert permanent(_db("22000")) == "data_error"  # asyncpg refusing a parameter (a lone surrogate)
    assert permanent(_db("23505")) == "integrity_error"
    assert permanent(_db("23503")) == "integrity_error"
    assert permanent(_db("23505", invalidated=True)) is None
    assert permanent(_db("40001")) is None
    assert permanent(_db("42P01")) is None  # undefined table: a deployment to fix, then retried a few times
    assert permanent(_db(None)) is None
    assert permanent(_validation_error()) == "validation_error"
    assert permanent(_encoding_error()) == "encoding_error"
    assert permanent(StatementError("bind", "INSERT", {}, _encoding_error())) == "encoding_error"
    assert permanent(ValueError("bad")) is None  # the handler's own refusal: retried a few times
    assert permanent(ConnectionRefusedError()) is None


def test_a_summary_names_the_class_and_the_sqlstate_never_the_data() -> None:
    driver = _Driver("22021")
    driver.args = ("invalid byte sequence for encoding UTF8: 0x00, in 'secret text'",)
    failure = DBAPIError("INSERT INTO messages VALUES ($1)", {"text": "secret text"}, driver)
    assert summary(failure) == "DBAPIError SQLSTATE 22021 (_Driver)"
    assert summary(KeyError("secret text")) == "KeyError"
    assert summary(_validation_error()) == "ValidationError of Message (string_too_long)"
    assert summary(StatementError("bind", "INSERT", {}, _encoding_error())) == "StatementError (UnicodeEncodeError)"


def _validation_error() -> ValidationError:
    try:
        Message(text="secret" * 20_000)
    except ValidationError as exc:
        return exc
    raise AssertionError("not refused")


def _encoding_error() -> UnicodeEncodeError:
    try:
        "secret \ud800".encode()
    except UnicodeEncodeError as exc:
        return exc
    raise AssertionError("encoded")
