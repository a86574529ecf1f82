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
TICKS = os.sysconf("SC_CLK_TCK")


def _kind(pid: int, leader: int) -> str | None:
    """None for a process that has ended (a zombie has no command line left)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return None
    if not command:
        return None
    if command.endswith(("java", "bash", "sh")):  # Spark's launch scripts exec the JVM
        return "jvm"  # Spark's driver and, in local mode, its executor
    return "python driver" if pid == leader else "python workers"


def session_processes(session: int) -> list[tuple[int, str | None, int, float]]:
    """The processes in ``session`` now: (pid, kind or None if it has ended, resident bytes, CPU seconds so far)."""
    processes = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[3]) != session:  # stat field 6: the session id
                continue
            rss = int((stat.parent / "statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):  # it ended while we looked
            continue
        pid = int(stat.parent.name)
        processes.append((pid, _kind(pid, session), rss, (int(fields[11]) + int(fields[12])) / TICKS))  # utime + stime
    return processes


class PeakRss:
    """``with PeakRss(pid) as peak: ...``; then ``peak.bytes`` (the whole tree) and ``peak.by_kind``.

    ``cpu_by_kind``: CPU seconds by kind, as last seen of each process (a process that ends
    between two samples loses what it spent since the last one).
    """

    def __init__(self, session: int, interval: float = 0.1) -> None:
        self.session, self.interval = session, interval
        self.by_kind: dict[str, int] = {}
        self._cpu: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def bytes(self) -> int:
        return self.by_kind.get("total", 0)

    @property
    def cpu_by_kind(self) -> dict[str, float]:
        seconds: dict[str, float] = {}
        for kind, cpu in self._cpu.values():
            seconds[kind] = seconds.get(kind, 0.0) + cpu
        return seconds

    def _sample(self) -> None:
        while not self._stop.is_set():
            sizes: dict[str, int] = {}
            for pid, kind, rss, cpu in session_processes(self.session):
                kind = kind or self._cpu.get(pid, ("ended",))[0]
                sizes[kind] = sizes.get(kind, 0) + rss
                self._cpu[pid] = (kind, cpu)
            sizes["total"] = sum(sizes.values())
            for kind, size in sizes.items():
                self.by_kind[kind] = max(self.by_kind.get(kind, 0), size)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
