"""Run a command and measure it whole: wall time, CPU of its whole process tree, peak memory.

CPU comes from a fresh cpuacct cgroup the command is started in (as root): it counts the JVM
and every Python worker, which ``getrusage(RUSAGE_CHILDREN)`` misses. Peak resident memory is
sampled from /proc for every process of the command's session, by kind: the JVM (Spark's
driver and, in local mode, its executor), the Python driver, and Python workers
(tests/support/process_tree.py).
Each stdout line is kept with the time it arrived, so progress lines can be timed; with
``cpu_every``, the cgroup's CPU is also read at that interval, so a stretch of a long run can be
costed on its own.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.process_tree import PeakRss

CPUACCT = Path("/sys/fs/cgroup/cpuacct")


@dataclass
class Measured:
    returncode: int
    wall_s: float
    cpu_s: float | None  # None: no cgroup could be made (not root)
    peak_rss: dict[str, int] = field(default_factory=dict)  # kind -> bytes, and "total"
    cpu_by_kind: dict[str, float] = field(default_factory=dict)  # sampled from /proc (cpu_s is exact)
    lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, stdout line)
    stderr: str = ""
    cpu_samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, CPU-s so far)
    started: float = 0.0  # time.perf_counter() at the start: the origin of the times above

    @property
    def stdout(self) -> str:
        return "".join(line for _, line in self.lines)


class CpuGroup:
    """A cpuacct cgroup to start a command in; ``seconds`` of CPU it used, once it has ended."""

    def __init__(self) -> None:
        self.path: Path | None = CPUACCT / f"bench-{uuid.uuid4().hex[:8]}"
        try:
            self.path.mkdir()
        except OSError:
            self.path = None

    def enter(self) -> None:
        """In the child, before exec: it and everything it starts are counted."""
        if self.path:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self) -> float | None:
        """CPU used so far by everything started in the group."""
        return int((self.path / "cpuacct.usage").read_text()) / 1e9 if self.path else None

    def close(self) -> float | None:
        seconds = self.seconds()
        if not self.path:
            return None
        for _ in range(50):  # removable once its last process has been reaped
            try:
                self.path.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        return seconds


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 3600, cpu_every: float = 0) -> Measured:
    group = CpuGroup()
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=group.enter)  # fmt: skip
    measured = Measured(0, 0.0, None, started=started)

    def read_lines() -> None:
        for line in process.stdout:
            measured.lines.append((time.perf_counter() - started, line))

    def sample_cpu() -> None:
        while process.poll() is None:
            try:
                measured.cpu_samples.append((time.perf_counter() - started, group.seconds()))
            except OSError:  # the group was closed: the command has ended
                return
            time.sleep(cpu_every)

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    if cpu_every and group.path:
        threading.Thread(target=sample_cpu, daemon=True).start()
    with PeakRss(process.pid) as peak:
        try:
            measured.stderr = process.stderr.read()
            measured.returncode = process.wait(timeout=timeout)
        finally:
            measured.wall_s = time.perf_counter() - started
            reader.join()
            measured.cpu_s = group.close()
    measured.peak_rss, measured.cpu_by_kind = peak.by_kind, peak.cpu_by_kind
    return measured
