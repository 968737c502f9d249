"""``kefu.backlog``: the records a consumer has not applied yet, per owned partition, from what it fetched and
committed and the partition's high watermark."""

from types import SimpleNamespace

from aiokafka import TopicPartition

from kefu.backlog import Backlog

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


class Consumer:
    def __init__(self) -> None:
        self.owned = {A, B}
        self.ends: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.ends.get(partition)


def records(*offsets: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(offset=offset) for offset in offsets]


def test_a_partition_counts_from_its_first_fetch_until_a_commit_then_from_the_commit() -> None:
    consumer = Consumer()
    backlog = Backlog(consumer, "g")
    assert backlog.partitions() == {}  # nothing fetched: no high watermark known
    consumer.ends = {A: 120, B: 7}
    backlog.fetched({A: records(100, 101), B: []})
    assert backlog.partitions() == {A: 20, B: 0}  # B: nothing fetched, so nothing waiting behind this consumer
    backlog.fetched({A: records(102)})  # a later fetch does not move the start
    backlog.committed({A: 110})
    assert backlog.partitions() == {A: 10, B: 0}
    backlog.committed({A: (120, "")})  # aiokafka's OffsetAndMetadata
    assert backlog.total() == 0


def test_a_revoked_partition_is_forgotten_and_counted_afresh_when_it_comes_back() -> None:
    consumer = Consumer()
    backlog = Backlog(consumer, "g")
    consumer.ends = {A: 50, B: 50}
    backlog.committed({A: 10, B: 40})
    assert backlog.total() == 50
    consumer.owned = {B}
    assert backlog.partitions() == {B: 10}
    consumer.owned = {A, B}  # another member applied A meanwhile; this one starts from its next fetch
    backlog.fetched({A: records(45)})
    assert backlog.partitions() == {A: 5, B: 10}
