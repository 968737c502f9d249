"""Which handler failures the consumer loop retries for ever (the infrastructure's) and which it dead-letters."""

from sqlalchemy.exc import DBAPIError

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
