"""The Kinesis source's options, validated on the driver where they enter the query."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

TRIM_HORIZON, LATEST = "trim_horizon", "latest"
DECODER_NAME = re.compile(r"[\w.]+:\w+")


def parse_timestamp(text: str) -> datetime:
    """ISO-8601; without an offset, UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"startingPosition must be trim_horizon, latest or an ISO-8601 time, got {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def load_decoder(name: str):
    """The function a ``decoder`` option names (``package.module:function``), imported."""
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


def _starting_position(text: str) -> str:
    return text.lower() if text.lower() in (TRIM_HORIZON, LATEST) else parse_timestamp(text).isoformat()


def _checked_decoder(name: str) -> str:
    """Checked on the driver, so that a wrong name stops the query before any task runs."""
    if not DECODER_NAME.fullmatch(name):
        raise ValueError(f"option decoder must name a function as module:function, not {name!r}")
    try:
        load_decoder(name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"option decoder {name!r} cannot be loaded: {error}") from None
    return name


def _positions(text: str) -> dict:
    try:
        positions = json.loads(text)
    except ValueError:
        positions = None
    if not isinstance(positions, dict) or not all(isinstance(value, dict) for value in positions.values()):
        raise ValueError(f"option initialPositions must be a JSON object of shard positions, got {text[:100]!r}")
    return positions


@dataclass(frozen=True)
class ReaderOptions:
    """The data source's options (``.option(...)``), validated."""

    stream: str
    metadata_path: str
    starting_position: str = TRIM_HORIZON
    max_records_per_batch: int = 0  # 0: everything available
    max_bytes_per_batch: int = 0  # payload bytes, split across shards; 0: no limit
    fail_on_trimmed: bool = False  # stop instead of reporting records trimmed before they were read
    decoder: str = ""  # "package.module:function" applied to each batch of raw records in the read task
    # Where a new query starts reading, per shard, as an offset's "shards" hold it (JSON): where an
    # earlier query's records end. Shards it does not name start at their trim horizon.
    initial_positions: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> ReaderOptions:
        for required in ("streamName", "metadataPath"):
            if not options.get(required):
                raise ValueError(f"option {required} is required")
        max_records, max_bytes = (int(options.get(name, "0")) for name in ("maxRecordsPerBatch", "maxBytesPerBatch"))
        if max_records < 0 or max_bytes < 0:
            raise ValueError("options maxRecordsPerBatch and maxBytesPerBatch must be 0 or more")
        fail_on_trimmed = options.get("failOnTrimmed", "false").lower()
        if fail_on_trimmed not in ("true", "false"):
            raise ValueError("option failOnTrimmed must be true or false")
        decoder = options.get("decoder", "")
        return cls(
            stream=options["streamName"],
            metadata_path=options["metadataPath"],
            starting_position=_starting_position(options.get("startingPosition", TRIM_HORIZON)),
            max_records_per_batch=max_records,
            max_bytes_per_batch=max_bytes,
            fail_on_trimmed=fail_on_trimmed == "true",
            decoder=_checked_decoder(decoder) if decoder else "",
            initial_positions=_positions(options.get("initialPositions", "{}")),
        )
