"""One writer per checkpoint: a lease with an epoch, taken by an exclusive create and renewed while the job runs.

Two jobs on one checkpoint would interleave their Delta commits, their running totals and Spark's
own checkpoint files, and on S3 nothing else notices (Spark's S3 checkpoint manager does not
detect two writers, apache/spark#37474). So a job holds its checkpoint's lease from the preflight
to its exit (docs/design.md, "One writer per checkpoint"):

- Each epoch of the lease is a file, ``CHECKPOINT/lease/<epoch>.json``: who holds it (a job id,
  host and pid) and until when (``expires``, by the holder's clock).
- **Taking** it (``take``) creates the next epoch's file with ``checkpoint_files.create`` (an
  exclusive link locally, ``If-None-Match: *`` on S3), and only when the latest epoch was
  released, has expired, or was held by a process of this machine that is gone (a crash, whose
  lease need not be waited out). Of two jobs racing for one epoch exactly one creates it; the
  other refuses, as does a job that finds the lease held.
- **Renewing** it (a thread, every third of its time) rewrites the holder's own file with a later
  expiry. A renewal counts only if it landed before the old expiry; after that a taker may have
  read the file as expired, so the holder takes the next epoch the way a taker would, and has
  lost the lease if that file exists already.
- **Checking** it (``check``: the fence before each commit to the tables and each save of the
  running totals) renews it first when less than a margin of its time is left, then requires
  that the next epoch's file does not exist.
- **Releasing** it at exit rewrites the file as released, so that the next job need not wait.

Each new holder deletes the epochs before the one it took over from, so the folder stays small.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from news_etl import checkpoint_files
from news_etl.settings import ConfigurationError

log = logging.getLogger("etl.lease")

FOLDER = "lease"
EPOCH_FILE = re.compile(r"^(\d{12})\.json$")
RENEWALS_PER_LEASE = 3  # renewed every third of its time: a failed renewal leaves two more tries
# The fence wants a quarter of the lease left: room for the commit that follows it, and for the
# holder's and a taker's clocks to disagree (docs/design.md, "One writer per checkpoint").
MARGIN_SHARE = 4
AWS_ERRORS = (OSError, ClientError, BotoCoreError)  # pyarrow's and local files' errors are OSErrors


class LeaseLostError(RuntimeError):
    """Another job holds the checkpoint now (or may): this one must commit nothing more."""


@dataclass(frozen=True)
class LeaseRecord:
    """What an epoch's file holds."""

    job: str  # a random id per run of the job, named in messages
    host: str
    pid: int
    process: str | None  # ``process_identity`` of the holder; None where /proc cannot tell
    expires: float  # seconds since 1970, by the holder's clock (an ISO-8601 time in the file)
    released: bool = False

    def free(self, now: float) -> bool:
        """Whether a taker may take the next epoch over from this one."""
        return self.released or now >= self.expires or holder_is_gone(self)

    def holder(self) -> str:
        return f"job {self.job} (pid {self.pid} on {self.host})"

    def encode(self) -> bytes:
        return json.dumps(asdict(self) | {"expires": utc(self.expires)}, indent=1).encode()

    @classmethod
    def decode(cls, document: bytes) -> LeaseRecord:
        fields = json.loads(document)
        return cls(**fields | {"expires": datetime.fromisoformat(fields["expires"]).timestamp()})


def utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def process_identity(pid: int) -> str | None:
    """A name of process ``pid`` that no other process ever has: the kernel's boot, the pid
    namespace, the pid and its start time. None off Linux, or when the process has ended."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    if fields[0] == "Z":  # ended, not yet reaped by its parent
        return None
    return f"{boot}/{namespace}/{pid}/{fields[19]}"  # stat's field 22: the start, in clock ticks since boot


def holder_is_gone(record: LeaseRecord) -> bool:
    """Whether ``record``'s holder ran on this machine (in this pid namespace) and has ended."""
    mine = process_identity(os.getpid())
    if record.process is None or mine is None or record.process.rsplit("/", 2)[0] != mine.rsplit("/", 2)[0]:
        return False
    return process_identity(record.pid) != record.process


class Lease:
    """A job's hold on its checkpoint: ``take`` it in the preflight, ``check`` it before each
    commit, ``release`` it at exit; a thread renews it in between. ``lost`` is set once another
    job has the checkpoint."""

    def __init__(self, checkpoint: str, seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.checkpoint, self.seconds, self.clock = checkpoint, seconds, clock
        self.folder = os.path.join(checkpoint, FOLDER)
        self.job = uuid.uuid4().hex[:8]
        self.epoch = 0  # 0: not held
        self.expires = 0.0
        self.lost: LeaseLostError | None = None
        self._lock = threading.RLock()  # the renewing thread, and the fence in foreachBatch's thread
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._keep_renewed, name="lease-renewer", daemon=True)

    def _path(self, epoch: int) -> str:
        return os.path.join(self.folder, f"{epoch:012d}.json")

    def _epochs(self) -> list[int]:
        names = checkpoint_files.names(self.folder)
        return sorted(int(match[1]) for name in names if (match := EPOCH_FILE.match(name)))

    def _read(self, epoch: int) -> LeaseRecord | None:
        document = checkpoint_files.read(self._path(epoch))
        return LeaseRecord.decode(document) if document is not None else None

    def _record(self, expires: float, released: bool = False) -> LeaseRecord:
        pid = os.getpid()
        return LeaseRecord(self.job, socket.gethostname(), pid, process_identity(pid), expires, released)

    def _create(self, epoch: int) -> bool:
        """Take ``epoch`` if no job has; then delete the epochs before the one it follows."""
        expires = self.clock() + self.seconds
        if not checkpoint_files.create(self._path(epoch), self._record(expires).encode()):
            return False
        self.epoch, self.expires = epoch, expires
        for old in self._epochs():
            if old < epoch - 1:
                checkpoint_files.delete(self._path(old))
        log.debug("took the lease on checkpoint %s (epoch %d, %.0f s, renewed every %.0f s)", self.checkpoint, epoch,
                 self.seconds, self.seconds / RENEWALS_PER_LEASE)  # fmt: skip
        return True

    def take(self) -> None:
        """Take the lease and keep it renewed until ``release``.

        Raises ``ConfigurationError`` (one line) when another job holds it, or took it at this moment.
        """
        epochs = self._epochs()
        latest = epochs[-1] if epochs else 0
        holder = self._read(latest) if latest else None
        if holder is not None and not holder.free(self.clock()):
            raise ConfigurationError(
                f"checkpoint {self.checkpoint} is in use by {holder.holder()}, whose lease runs until "
                f"{utc(holder.expires)}: run one job per checkpoint (a crashed job's lease expires by then)"
            )
        if not self._create(latest + 1):
            winner = self._read(latest + 1)
            by = winner.holder() if winner else "another job"
            raise ConfigurationError(f"checkpoint {self.checkpoint} was taken at this moment by {by}: "
                                     "run one job per checkpoint")  # fmt: skip
        self._renewer.start()

    def _lose(self, how: str) -> LeaseLostError:
        self.lost = LeaseLostError(f"this job lost the lease on checkpoint {self.checkpoint} {how}: it stops and "
                                   "commits nothing more")  # fmt: skip
        log.error("%s", self.lost)
        return self.lost

    def _check_next_epoch(self) -> None:
        taker = self._read(self.epoch + 1)
        if taker is not None:
            raise self._lose(f"to {taker.holder()}, which took epoch {self.epoch + 1}")

    def renew(self) -> None:
        """Push the expiry a lease's time ahead. Raises ``LeaseLostError`` when another job has the checkpoint."""
        with self._lock:
            if self.lost:
                raise self.lost
            if not self.epoch:
                raise RuntimeError(f"the lease on checkpoint {self.checkpoint} is not held")
            now = self.clock()
            if now < self.expires:
                checkpoint_files.replace(self._path(self.epoch), self._record(now + self.seconds).encode())
                if self.clock() < self.expires:  # landed in time: no taker can have read this epoch as expired
                    self.expires = now + self.seconds
                    self._check_next_epoch()  # a taker whose clock runs ahead of ours by more than the margin
                    return
            # Expired before this renewal landed (the job was paused, or renewals failed): a taker may
            # have read the file as expired, so take the next epoch as a taker would.
            log.warning("the lease on checkpoint %s expired at %s before it was renewed: taking the next epoch",
                        self.checkpoint, utc(self.expires))  # fmt: skip
            if not self._create(self.epoch + 1):
                self._check_next_epoch()
                raise self._lose(f"to another job, after its epoch {self.epoch} expired at {utc(self.expires)}")

    def check(self) -> None:
        """The fence before a commit: returns only if this job holds the lease with at least a margin
        of its time left (renewing it first when less is left). Raises ``LeaseLostError`` otherwise."""
        with self._lock:
            if self.lost:
                raise self.lost
            if self.clock() >= self.expires - self.seconds / MARGIN_SHARE:
                self.renew()
            self._check_next_epoch()

    def _keep_renewed(self) -> None:
        while not self._stop.wait(self.seconds / RENEWALS_PER_LEASE):
            try:
                self.renew()
            except LeaseLostError:
                return  # ``lost`` is set: the job's run loop stops the query
            except AWS_ERRORS as error:  # the next renewal, or the fence, tries again
                log.warning("could not renew the lease on checkpoint %s (it runs until %s): %s", self.checkpoint,
                            utc(self.expires), error)  # fmt: skip

    def release(self) -> None:
        """Stop renewing and, unless it was lost, mark the lease released, so that the next job need
        not wait for it to expire. A failure to mark it is logged: the lease then expires by itself."""
        self._stop.set()
        if self._renewer.is_alive():
            self._renewer.join()
        with self._lock:
            if not self.epoch or self.lost:
                return
            try:
                checkpoint_files.replace(self._path(self.epoch), self._record(self.clock(), released=True).encode())
            except AWS_ERRORS as error:
                log.warning("could not release the lease on checkpoint %s; it expires at %s: %s", self.checkpoint,
                            utc(self.expires), error)  # fmt: skip
                return
            log.debug("released the lease on checkpoint %s (epoch %d)", self.checkpoint, self.epoch)
            self.epoch = 0
