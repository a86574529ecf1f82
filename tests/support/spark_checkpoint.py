"""What Spark itself recorded in a checkpoint, read from its files rather than from the job's account."""

from __future__ import annotations

import json
from pathlib import Path


def recorded_conf(checkpoint: Path) -> dict[str, str]:
    """The SQL settings Spark recorded with the checkpoint's first batch (offsets/0, second line)."""
    return json.loads((checkpoint / "spark" / "offsets" / "0").read_text().splitlines()[1])["conf"]
