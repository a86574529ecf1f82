"""A Spark streaming data source for AWS Kinesis, written in Python with boto3.

    spark.dataSource.register(KinesisDataSource)
    spark.readStream.format("kinesis").option("streamName", "news")
        .option("metadataPath", "/checkpoints/news/kinesis").load()

How it fits Spark's streaming model (one module per concern):

- **Offsets** (``offsets``) are JSON dicts: the micro-batch number, and for every known shard
  where that batch starts reading, its parents and whether it has been read to its end.
  Structured Streaming checkpoints them.
- **One input partition per shard.** Shards are read with boto3 inside Spark tasks on the
  executors (``reader``), up to 10,000 records a GetRecords call; the driver (``source``) never
  holds record payloads.
- **Deterministic replay.** The task that first reads a shard for batch N records where it
  stopped (``shard_ends``) before Spark can use its rows; any re-run of batch N reads exactly up
  to that recorded end. Batch N+1 starts after those ends.
- **Resharding.** A child shard is read only once all its parents have been read to their ends,
  so records of one partition key stay in order across a split or merge.
- **Trimmed records.** Records the stream's retention removed before they were read are found
  where reading resumes (``reader.ShardReader``) and recorded with the batch as a ``TrimmedGap``;
  Kinesis does not say how many there were. Option ``failOnTrimmed`` stops the query instead.
- ``trigger(availableNow=True)`` reads what had arrived when the query started, then stops.
- **Decoding where records are read.** Option ``decoder`` (``options``) names a function
  (``package.module:function``, importable on the driver and the executors) that turns each
  batch of raw records (``reader.ARROW_SCHEMA``) into the rows the query wants, given with
  ``.schema(...)``; Spark checks the batches it returns against that schema in the task. It runs
  in the read task, so a payload is parsed in the process that received it and crosses to the
  JVM once, already decoded, rather than going there raw and back to Python for a
  ``mapInArrow`` (BENCHMARKS.md).
"""

from news_etl.kinesis.options import LATEST, TRIM_HORIZON, ReaderOptions, parse_timestamp
from news_etl.kinesis.shard_ends import ShardEnd, ShardEndStore, TrimmedGap, TrimmedRecordsError
from news_etl.kinesis.source import KinesisDataSource, KinesisStreamReader

__all__ = [
    "LATEST",
    "TRIM_HORIZON",
    "KinesisDataSource",
    "KinesisStreamReader",
    "ReaderOptions",
    "ShardEnd",
    "ShardEndStore",
    "TrimmedGap",
    "TrimmedRecordsError",
    "parse_timestamp",
]
