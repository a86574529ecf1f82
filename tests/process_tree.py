"""Peak resident memory of a process tree: the job's Python driver, its JVM and the Python workers.

``getrusage`` sees only waited-for children and misses the JVM's forked workers, so the tree is
sampled from /proc instead: every process in the job's session (it is started with
``start_new_session``), by kind, every ``interval`` seconds; the highest sums are the peaks.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _kind(pid: int, leader: int) -> str | None:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return None
    if command.endswith("java"):
        return "jvm"  # Spark's driver and, in local mode, its executor
    return "python driver" if pid == leader else "python workers"


def session_rss(session: int) -> dict[str, int]:
    """Resident bytes of the processes in ``session`` now, by kind, and their ``total``."""
    sizes: dict[str, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[3]) != session:  # stat field 6: session id
                continue
            rss = int((stat.parent / "statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):  # it ended while we looked
            continue
        kind = _kind(int(stat.parent.name), session)
        if kind:
            sizes[kind] = sizes.get(kind, 0) + rss
    sizes["total"] = sum(sizes.values())
    return sizes


class PeakRss:
    """``with PeakRss(pid) as peak: ...``; then ``peak.bytes`` (the whole tree) and ``peak.by_kind``."""

    def __init__(self, session: int, interval: float = 0.1) -> None:
        self.session, self.interval = session, interval
        self.by_kind: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def bytes(self) -> int:
        return self.by_kind.get("total", 0)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for kind, size in session_rss(self.session).items():
                self.by_kind[kind] = max(self.by_kind.get(kind, 0), size)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
