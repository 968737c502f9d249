"""``kafka.partition_of`` puts every key where Kafka's default partitioner does (the Java client's and aiokafka's
murmur2), so that records keep their partition whichever client produced them."""

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from kefu.kafka import partition_of


@given(st.binary(max_size=80), st.integers(min_value=1, max_value=64))
def test_a_key_goes_where_kafkas_default_partitioner_sends_it(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert partition_of(key, partitions, partitions) == expected
    assert partition_of(key, partitions, partitions) == expected  # remembered, the same


def test_no_key_goes_to_an_available_partition() -> None:
    assert {partition_of(None, [0, 1, 2], [2]) for _ in range(20)} == {2}
