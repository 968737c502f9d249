"""The consumers' fetch wait: 50 ms, or KEFU_KAFKA_FETCH_MAX_WAIT_MS; a background consumer's 200 ms, or
KEFU_KAFKA_BACKGROUND_FETCH_MAX_WAIT_MS."""

import pytest

from kefu import kafka


async def test_the_fetch_wait_is_50_ms_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kafka.FETCH_MAX_WAIT_ENV, raising=False)
    assert kafka.fetch_max_wait_ms() == 50
    monkeypatch.setenv(kafka.FETCH_MAX_WAIT_ENV, "500")
    assert kafka.fetch_max_wait_ms() == 500
    consumer = kafka.create_consumer("127.0.0.1:9", "kefu.any.v1", group_id="kefu-any")  # not started: no I/O
    try:
        assert consumer._fetch_max_wait_ms == 500
    finally:
        await consumer.stop()  # else its __del__ warns, charged to whichever test runs next


async def test_a_background_consumer_waits_200_ms_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kafka.BACKGROUND_FETCH_MAX_WAIT_ENV, raising=False)
    monkeypatch.setenv(kafka.FETCH_MAX_WAIT_ENV, "20")  # the other consumers' setting is not a background one's
    assert kafka.fetch_max_wait_ms(background=True) == 200
    monkeypatch.setenv(kafka.BACKGROUND_FETCH_MAX_WAIT_ENV, "1000")
    assert kafka.fetch_max_wait_ms(background=True) == 1000
    consumers = [
        kafka.create_consumer("127.0.0.1:9", "kefu.any.v1", group_id="kefu-any", background=background)
        for background in (True, False)
    ]
    try:
        assert [c._fetch_max_wait_ms for c in consumers] == [1000, 20]
    finally:
        await kafka.stop_all(*consumers)
