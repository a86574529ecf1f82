"""populate --aggregate: its KPL aggregates read back with the job's decoder, grouping, the 1 MiB cut,
corrupt aggregates, and the command line."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from news_etl.kinesis.aggregation import AggregatedRecord, AggregateError, UserRecord, user_records
from news_populate.aggregation import (
    CORRUPTIONS,
    MAGIC,
    Corruption,
    aggregate_records,
    encode_aggregate,
    generate_aggregates,
    group_records,
)
from news_populate.articles import Record, RecordKind, generate_records
from news_populate.cli import RunStats, kinesis_batch_size, parse_settings, record_batches, summary_line
from news_populate.producer import MAX_BYTES_PER_CALL, MAX_BYTES_PER_RECORD, put_batch
from tests.support import kpl

UNTIL = datetime(2026, 11, 20, 12, tzinfo=UTC)

# The start of the reason the job quarantines each kind of corrupt aggregate with.
EXPECTED_REASON = {
    Corruption.BAD_CHECKSUM: "KPL aggregate checksum mismatch",
    Corruption.NOT_PROTOBUF: "KPL aggregate is not a valid protobuf AggregatedRecord",
    Corruption.KEY_INDEX_OUT_OF_RANGE: "KPL aggregate user record has partition key index",
}


def aggregates(count=500, per_aggregate=50, seed=3, **options):
    return list(generate_aggregates(count, per_aggregate, seed=seed, until=UNTIL, **options))


def made_up(keys: str, size: int = 10) -> list[Record]:
    """One record per character of ``keys``, keyed by it, each ``size`` bytes of distinct data."""
    return [Record(RecordKind.VALID, key, bytes([i % 256]) * size) for i, key in enumerate(keys)]


def kinesis_size(data: bytes, partition_key: str) -> int:
    return len(data) + len(partition_key.encode())


def test_the_job_reads_back_every_user_record_in_order_with_its_key():
    """The aggregates tile generate_records' records in order; the job's decoder gives each valid one's back."""
    expected = [UserRecord(r.partition_key, r.data) for r in generate_records(
        1000, seed=5, until=UNTIL, bad_ratio=0.1, dup_ratio=0.1)]  # fmt: skip
    made = aggregates(1000, 30, bad_ratio=0.1, dup_ratio=0.1, seed=5)
    offset = corrupt = 0
    for aggregate in made:
        held = expected[offset : offset + len(aggregate.records)]
        offset += len(held)
        assert [UserRecord(r.partition_key, r.data) for r in aggregate.records] == held
        if aggregate.corruption is None:
            assert user_records(aggregate.data) == held
        else:
            corrupt += 1
    assert offset == 1000 and corrupt == 3  # int(34 aggregates * 0.1)


def test_an_aggregate_holds_n_records_and_takes_its_first_records_key():
    """Groups of N in order, the last one shorter; the Kinesis partition key is the first user record's."""
    made = aggregates(503, 50)
    assert [len(a.records) for a in made] == [50] * 10 + [3]
    assert all(a.partition_key == a.records[0].partition_key for a in made)
    assert all(a.data.startswith(MAGIC) for a in made)
    assert [len(a.records) for a in aggregates(7, 1)] == [1] * 7


def test_keys_are_shared_through_the_key_table_and_the_bytes_are_the_kpl_format():
    """Repeated keys appear once in the table; the bytes equal the hand-written encoder's."""
    records = made_up("abaca")
    aggregate = encode_aggregate(records)
    message = AggregatedRecord()
    message.ParseFromString(aggregate.data[4:-16])
    assert list(message.partition_key_table) == [b"a", b"b", b"c"]  # the job reads keys as bytes, then decodes them
    assert [r.partition_key_index for r in message.records] == [0, 1, 0, 2, 0]
    assert aggregate.data == kpl.aggregate([(r.partition_key, r.data) for r in records])


def test_an_aggregate_of_big_articles_is_cut_before_the_1_mib_record_limit():
    """100 kB records, N = 50: ten fit in 1 MiB with their framing, an eleventh would not."""
    records = made_up("k" * 25, size=100_000)
    made = list(aggregate_records(records, 25, 50, seed=1))
    assert [len(a.records) for a in made] == [10, 10, 5]
    assert all(kinesis_size(a.data, a.partition_key) <= MAX_BYTES_PER_RECORD for a in made)
    assert kinesis_size(encode_aggregate(records[:11]).data, "k") > MAX_BYTES_PER_RECORD


def test_the_size_limit_is_exact_to_the_byte():
    """An aggregate of exactly max_bytes is kept whole; one byte less and it is cut."""
    records = made_up("xyz", size=200)
    exact = kinesis_size(encode_aggregate(records).data, "x")
    assert [len(g) for g in group_records(records, 10, max_bytes=exact)] == [3]
    assert [len(g) for g in group_records(records, 10, max_bytes=exact - 1)] == [2, 1]


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 20_000) | st.sampled_from([127, 128, 16_383, 16_384]), min_size=1, max_size=40),
    keys=st.lists(st.sampled_from(["a", "bb", "é" * 70]), min_size=40, max_size=40),
    per_aggregate=st.integers(1, 12),
    slack=st.integers(0, 60_000),
)
def test_every_aggregate_fits_and_is_cut_only_when_full(sizes, keys, per_aggregate, slack):
    """Each group fits in max_bytes (data plus key) and ends at N records, the input's end, or
    because the next record would not fit; together the groups are the input."""
    records = [Record(RecordKind.VALID, key, b"x" * size) for size, key in zip(sizes, keys, strict=False)]
    max_bytes = 20_500 + slack  # the largest record, 140-byte key twice, framing
    groups = list(group_records(records, per_aggregate, max_bytes))
    assert [r for g in groups for r in g] == records
    for group, following in zip(groups, [*groups[1:], None], strict=True):
        assert len(group) <= per_aggregate
        assert kinesis_size(encode_aggregate(group).data, group[0].partition_key) <= max_bytes
        if following and len(group) < per_aggregate:
            grown = encode_aggregate([*group, following[0]])
            assert kinesis_size(grown.data, group[0].partition_key) > max_bytes


def test_a_record_too_large_for_an_aggregate_of_its_own_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        list(group_records(made_up("k", size=1000), 10, max_bytes=1000))


def test_the_same_seed_gives_byte_identical_aggregates():
    """Two runs with one seed agree on bytes, keys and which aggregates are corrupt, and how."""
    first, second = aggregates(600, 20, bad_ratio=0.2), aggregates(600, 20, bad_ratio=0.2)
    assert first == second
    other = aggregates(600, 20, seed=4, bad_ratio=0.2)
    assert [a.corruption for a in first] != [a.corruption for a in other]


@pytest.mark.parametrize(
    ("count", "per_aggregate", "ratio", "max_bytes"),
    [(500, 50, 0.0, None), (500, 50, 0.1, None), (1000, 7, 0.25, None), (300, 3, 1.0, None),
     (400, 40, 0.3, 40_000), (400, 40, 0.05, 25_000)],
    ids=["none", "tenth", "quarter", "all", "cut-at-40kB", "cut-at-25kB"],
)  # fmt: skip
def test_exactly_the_bad_ratio_of_aggregates_is_corrupt(count, per_aggregate, ratio, max_bytes):
    """int(aggregates * ratio) whole aggregates are corrupt, also when size cuts change how many there are."""
    options = {"max_bytes": max_bytes} if max_bytes else {}
    made = aggregates(count, per_aggregate, bad_ratio=ratio, **options)
    if max_bytes:
        assert len(made) > -(-count // per_aggregate)  # the cuts made more aggregates than count / N
    assert sum(a.corruption is not None for a in made) == int(len(made) * ratio)


def test_each_corrupt_aggregate_is_quarantined_for_its_own_reason():
    """Every kind of corruption occurs, and the job's decoder refuses each with the matching reason."""
    made = aggregates(2000, 5, bad_ratio=0.3)
    assert Counter(a.corruption for a in made if a.corruption).keys() == set(CORRUPTIONS)
    for aggregate in made:
        if aggregate.corruption is None:
            assert user_records(aggregate.data) == [UserRecord(r.partition_key, r.data) for r in aggregate.records]
            continue
        with pytest.raises(AggregateError) as raised:
            user_records(aggregate.data)
        assert str(raised.value).startswith(EXPECTED_REASON[aggregate.corruption])


@pytest.mark.parametrize("corruption", CORRUPTIONS)
@pytest.mark.parametrize("keys", ["k", "kkk", "abcab"])
def test_a_corruption_breaks_any_aggregate_without_making_it_larger(corruption, keys):
    """Whatever the keys, each corruption gives its reason, and no corrupt aggregate outgrows the valid one."""
    records = made_up(keys)
    corrupt, valid = encode_aggregate(records, corruption), encode_aggregate(records)
    assert len(corrupt.data) <= len(valid.data) and corrupt.partition_key == valid.partition_key
    with pytest.raises(AggregateError, match=f"^{EXPECTED_REASON[corruption]}"):
        user_records(corrupt.data)


def test_records_other_than_announced_are_refused():
    with pytest.raises(ValueError, match="not the 5 announced"):
        list(aggregate_records(made_up("abc"), 5, 2, seed=1))
    with pytest.raises(ValueError, match="more than the 2"):
        list(aggregate_records(made_up("abc"), 2, 2, seed=1))


class AcceptingKinesis:
    def __init__(self):
        self.entries: list[dict] = []

    def put_records(self, StreamName, Records):  # noqa: N803 (boto3's parameter names)
        self.entries.extend(Records)
        return {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "s"} for _ in Records]}


def test_the_summary_counts_user_records_and_the_aggregates_that_held_them():
    """--count 500 --aggregate 50 --bad-ratio 0.1: 500 user records (50 invalid) in 10 aggregates, one corrupt."""
    settings_ = parse_settings(["--stream", "s", "--count", "500", "--aggregate", "50", "--bad-ratio", "0.1",
                                "--seed", "3", "--until", UNTIL.isoformat()])  # fmt: skip
    kinesis, stats = AcceptingKinesis(), RunStats()
    for batch in record_batches(settings_, kinesis_batch_size(settings_)):
        put_batch(kinesis, "s", batch, stats)
        stats.count_user_records(batch)
    assert len(kinesis.entries) == 10 and all(e["Data"].startswith(MAGIC) for e in kinesis.entries)
    line = summary_line(settings_, stats, 1.0)
    assert line.startswith("populate: accepted 500/500 records into s (450 valid, 50 invalid, 0 duplicates), failed 0")
    assert line.endswith(", seed 3, in 10 KPL aggregates of up to 50 (1 corrupt, holding 50 records)")


def test_paced_aggregates_go_a_quarter_second_of_user_records_to_a_call():
    """--rate counts user records: at 400 a second and 20 to an aggregate, 5 aggregates a call."""
    assert kinesis_batch_size(parse_settings(["--stream", "s", "--rate", "400", "--aggregate", "20"])) == 5
    assert kinesis_batch_size(parse_settings(["--stream", "s", "--rate", "400"])) == 100
    big = parse_settings(["--stream", "s", "--count", "2000", "--aggregate", "400", "--seed", "1"])
    sizes = [sum(len(a.data) + len(a.partition_key) for a in b) for b in record_batches(big, kinesis_batch_size(big))]
    assert all(size <= MAX_BYTES_PER_CALL for size in sizes)


@pytest.mark.parametrize("value", ["-1", "ten", "2.5"])
def test_a_bad_aggregate_value_stops_with_one_line_naming_the_flag(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(["--stream", "s", "--aggregate", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--aggregate" in err


def test_aggregate_is_off_by_default_and_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("AGGREGATE", raising=False)
    assert parse_settings(["--stream", "s"]).aggregate == 0
    monkeypatch.setenv("AGGREGATE", "25")
    assert parse_settings(["--stream", "s"]).aggregate == 25
