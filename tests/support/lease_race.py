"""Jobs racing for a checkpoint's lease: threads that all call ``Lease.take`` at once."""

from __future__ import annotations

import threading

from news_etl.lease import Lease
from news_etl.settings import ConfigurationError


def race(racers: list[Lease]) -> dict[str, str]:
    """Each racer's outcome, by its job id: "took", or the one line of its refusal."""
    start, outcomes = threading.Barrier(len(racers)), {}

    def take(lease: Lease) -> None:
        start.wait()
        try:
            lease.take()
            outcomes[lease.job] = "took"
        except ConfigurationError as refused:
            outcomes[lease.job] = str(refused)

    threads = [threading.Thread(target=take, args=(lease,)) for lease in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
