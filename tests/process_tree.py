"""Peak resident memory of a process tree: the job's Python driver, its JVM and the Python workers.

``getrusage`` sees only waited-for children and misses the JVM's forked workers, so the tree is
sampled from /proc instead: every process in the job's session (it is started with
``start_new_session``), summed, every ``interval`` seconds; the highest sum is the peak.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def session_rss(session: int) -> int:
    """Bytes resident in all processes of ``session`` now."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[3]) == session:  # field 6 of stat: the session id
                total += int((stat.parent / "statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):  # the process ended while we looked
            continue
    return total


class PeakRss:
    """``with PeakRss(pid) as peak: ...``; then ``peak.bytes``."""

    def __init__(self, session: int, interval: float = 0.1) -> None:
        self.session, self.interval, self.bytes = session, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.bytes = max(self.bytes, session_rss(self.session))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
