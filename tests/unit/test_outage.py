"""Which failures are an outage (503, logged once) and which are a bug (500, logged with the traceback)."""

import logging

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, UnknownTopicOrPartitionError
from sqlalchemy import exc as sa

from kefu import broker_watch
from kefu.outage import Availability, describe, unavailable


class _Driver(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _db(kind: type[sa.DBAPIError], sqlstate: str | None, *, invalidated: bool = False) -> sa.DBAPIError:
    return kind("SELECT 1", {"secret": "x"}, _Driver("boom", sqlstate), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("exc", "dependency"),
    [
        (_db(sa.OperationalError, None), "database"),  # a refused or timed-out connect (kefu.outage.watch_engine)
        (_db(sa.OperationalError, "08006"), "database"),  # connection failure
        (_db(sa.OperationalError, "57P01"), "database"),  # admin shutdown
        (_db(sa.OperationalError, "57P03"), "database"),  # cannot connect now (starting up)
        (_db(sa.OperationalError, "53300"), "database"),  # too many connections
        (_db(sa.DBAPIError, "3D000"), "database"),  # no such database
        (_db(sa.InterfaceError, None, invalidated=True), "database"),  # connection closed mid-statement
        (sa.TimeoutError("QueuePool limit reached"), "database"),
        (_db(sa.IntegrityError, "23505"), None),  # a bug or bad data: stays a 500
        (_db(sa.DataError, "22021"), None),
        (_db(sa.ProgrammingError, "42P01"), None),
        (_db(sa.InterfaceError, None), None),
        (KafkaConnectionError("Connection at 127.0.0.1:9092 closed"), "broker"),
        (KafkaTimeoutError(), "broker"),
        (NodeNotReadyError(), "broker"),
        (UnknownTopicOrPartitionError(), "broker"),  # retriable: the broker is not ready to serve it yet
        (ValueError("no"), None),
        (ConnectionRefusedError(111, "Connection refused"), None),  # outside the database's and broker's trees
    ],
)
def test_which_failures_are_an_outage(exc: BaseException, dependency: str | None) -> None:
    assert unavailable(exc) == dependency


def test_describe_names_the_driver_error_without_statement_or_parameters() -> None:
    text = describe(_db(sa.OperationalError, "08006"))
    assert text == "_Driver: boom"
    assert "SELECT" not in text and "secret" not in text


def test_an_availability_logs_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kefu.outage")
    database = Availability("database", "db:5432/kefu")
    database.up()  # up and up again: nothing to say
    assert [database.down(f"refused {n}") for n in range(100)] == [True] + [False] * 99
    database.up()
    database.up()
    assert [r.getMessage() for r in caplog.records] == [
        "database unavailable (db:5432/kefu): refused 0",
        caplog.records[1].getMessage(),
    ]
    assert caplog.records[1].getMessage().startswith("database available again (db:5432/kefu) after ")
    assert caplog.records[1].getMessage().endswith("(99 more failures not logged)")


def test_aiokafka_connection_trouble_becomes_one_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    # records logged outside a watched client's tasks share this one; a fresh one for the test
    monkeypatch.setattr(broker_watch, "_unattributed", Availability("broker", "kafka client"))
    broker_watch.install()
    client = logging.getLogger("aiokafka")
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    for _ in range(50):
        client.error("Unable connect to node with id %s: %s", 1, OSError(111, "Connect call failed"))
        fetcher.error("Failed fetch messages from %s: %s", 1, NodeNotReadyError("not ready"))
        client.error("Unable to update metadata from %s", [1])
    fetcher.warning("Not authorized to read from topic %s.", "t")  # not an outage: passes
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0][0] == "kefu.outage"
    assert messages[0][1].startswith("broker unavailable (kafka client): Unable connect to node with id 1")
    assert messages[1] == ("aiokafka.consumer.fetcher", "Not authorized to read from topic t.")
