"""The job's record schemas, declared once: what the read task yields and what each output holds.

``transform`` builds ``PREPARED_SCHEMA`` rows in the read task; ``sink`` writes
``ENRICHED_SCHEMA`` and ``QUARANTINE_SCHEMA`` files; Spark's view of the prepared rows is derived
from the Arrow one (``PREPARED_SPARK_SCHEMA``). The article contract they implement is in
docs/contract.md.
"""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql.pandas.types import from_arrow_schema

ENRICHED, QUARANTINED = "enriched", "quarantine"  # the two outputs, and the folders they are written to
TIMESTAMP = pa.timestamp("us", tz="UTC")
# The article's text fields, as the output stores them (optional ones as their JSON text when not strings).
ARTICLE_FIELDS = ("article_id", "title", "content", "author", "source", "url", "category", "language")
# Where each record came from: the Kinesis source's columns, passed through unchanged.
# ``sub_sequence_number`` is a user record's index in its KPL aggregate, null for a plain record.
RECORD_FIELDS = [pa.field("shard_id", pa.string()), pa.field("sequence_number", pa.string()),
                 pa.field("sub_sequence_number", pa.int64()), pa.field("arrival_time", TIMESTAMP)]  # fmt: skip
PROCESSED_AT = pa.field("processed_at", TIMESTAMP)
# The LSH band keys of the content (``near_dup``), computed in the read task; null without a word.
NEAR_DUP_BANDS = pa.field("near_dup_bands", pa.list_(pa.int64()))
# What the driver assigns each valid article (``clusters``): its near-duplicate cluster (the id of
# the cluster's first article), whether it is that first article, and its split.
CLUSTER_FIELDS = [pa.field("cluster_id", pa.string()), pa.field("first_in_cluster", pa.bool_()),
                  pa.field("split", pa.string())]  # fmt: skip

ENRICHED_SCHEMA = pa.schema(
    [
        *[pa.field(name, pa.string()) for name in ARTICLE_FIELDS],
        pa.field("published_at", TIMESTAMP),
        pa.field("word_count", pa.int32()),
        *CLUSTER_FIELDS,
        NEAR_DUP_BANDS,
        *RECORD_FIELDS,
        PROCESSED_AT,
    ]
)
QUARANTINE_SCHEMA = pa.schema([pa.field("raw_data", pa.binary()), pa.field("error", pa.string()), *RECORD_FIELDS,
                               PROCESSED_AT])  # fmt: skip
OUTPUT_SCHEMAS = {ENRICHED: ENRICHED_SCHEMA, QUARANTINED: QUARANTINE_SCHEMA}

# What the read task yields for every record: where it goes (``kind``), the key dedup keeps the
# first of, and both outputs' columns but those the driver adds (the clusters, the processing time).
DRIVER_FIELDS = (*[field.name for field in CLUSTER_FIELDS], PROCESSED_AT.name)
PREPARED_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string()),
        pa.field("dedup_key", pa.string()),
        *[field for field in ENRICHED_SCHEMA if field.name not in DRIVER_FIELDS],
        *[field for field in QUARANTINE_SCHEMA if field.name not in ENRICHED_SCHEMA.names],
    ]
)
PREPARED_SPARK_SCHEMA = from_arrow_schema(PREPARED_SCHEMA)
# What the writer receives: both outputs' columns, plus where each row goes and its partition.
OUTPUT_COLUMNS = (
    "kind",
    "dt",
    *ENRICHED_SCHEMA.names,
    *[n for n in QUARANTINE_SCHEMA.names if n not in ENRICHED_SCHEMA.names],
)
