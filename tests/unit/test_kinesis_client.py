"""The Kinesis client's lean response parsing gives what botocore's default parsing gives."""

from __future__ import annotations

import base64
import json

import botocore.session
from botocore.parsers import ResponseParserFactory
from botocore.utils import parse_timestamp
from hypothesis import given
from hypothesis import strategies as st

from news_etl.aws import epoch_to_datetime, kinesis_session

GET_RECORDS = botocore.session.get_session().get_service_model("kinesis").operation_model("GetRecords").output_shape
# Epoch seconds as Kinesis writes them (milliseconds), and any float of the years 2001-2286.
EPOCHS = st.one_of(st.integers(10**12, 10**13 - 1).map(lambda ms: ms / 1000), st.floats(1e9, 1e10))


def parsed(factory: ResponseParserFactory, body: dict) -> dict:
    response = {"body": json.dumps(body).encode(), "headers": {}, "status_code": 200}
    return factory.create_parser("json").parse(response, GET_RECORDS)


@given(st.lists(st.tuples(st.binary(max_size=64), EPOCHS), max_size=5))
def test_get_records_parses_to_the_same_bytes_and_microseconds_as_botocore_default(records):
    """Data as the same bytes, ApproximateArrivalTimestamp as the same instant to the microsecond."""
    rows = [(str(i), base64.b64encode(data).decode(), arrival) for i, (data, arrival) in enumerate(records)]
    fields = ("SequenceNumber", "Data", "ApproximateArrivalTimestamp")
    body = {"Records": [{"PartitionKey": "k", **dict(zip(fields, row, strict=True))} for row in rows]}
    lean = parsed(kinesis_session()._session.get_component("response_parser_factory"), body)
    default = parsed(ResponseParserFactory(), body)
    assert lean["Records"] == default["Records"]
    assert [r["Data"] for r in lean["Records"]] == [data for data, _ in records]
    assert all(type(r["Data"]) is bytes for r in lean["Records"])


@given(EPOCHS)
def test_an_epoch_time_is_the_instant_botocore_reads(seconds):
    """The same microsecond as botocore's default, whatever the float's rounding."""
    assert epoch_to_datetime(seconds) == parse_timestamp(seconds)


def test_a_timestamp_that_is_not_a_number_goes_to_botocore_default():
    """An ISO-8601 string (no Kinesis response has one) is still read."""
    assert epoch_to_datetime("2026-11-20T09:00:00.123Z") == parse_timestamp("2026-11-20T09:00:00.123Z")
