"""`make bench`, steady state: the job in continuous mode for ten minutes, fed at a fixed rate.

The batch benchmarks (bench/bench_etl.py) drain a backlog; a deployed job mostly keeps up with a
stream. Here populate puts articles (~3.2 KB, 5% invalid, 5% repeats) into a 4-shard moto stream
at ``--rate`` records a second for ``--minutes``, while the job reads it from TRIM_HORIZON with its
default trigger (5 s) and stops by ``--idle-timeout`` once the stream goes quiet. The job runs in a
cpuacct cgroup read every second (bench/measure.py); populate and moto are outside it.

The first ``--warm-up`` seconds (start-up, the catch-up of what was put meanwhile, the JIT's first
compilations) are left out. Over the rest of the feed, a run reports:

- CPU-s per 10k records: the cgroup's CPU over that stretch, per record the batches of that
  stretch read;
- the rate it read at, against the rate it was fed;
- its lag: the largest ``MillisBehindLatest`` of each batch's shards (the batch lines), as the
  median, 95th percentile and maximum over the stretch, and its first and last minute, so a lag
  that keeps growing shows.

The same run is made twice, one after the other: with the JVM options the job ships
(``news_etl.session.JVM_OPTIONS``: the JIT's quick tier only, chosen on batch runs of a minute)
and with the JIT's default tiers (C2 included), so the choice is checked on a long-running job.

    python -m bench.steady [--rate 2000] [--minutes 10] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.bench_populate import new_stream
from bench.measure import run as measured_run
from news_etl.session import JVM_OPTIONS
from tests.support.emulators import start_moto
from tests.support.jobs import UNTIL

REPO = Path(__file__).resolve().parent.parent
BATCH_LINE = re.compile(r"^batch (\d+): read (\d+),.* lag: (.*)$")
SHARD_LAG = re.compile(r"(\S+) (-?\d+) ms")
DEFAULT_TIERS = "-XX:+TieredCompilation"  # the JVM's default: C1, then C2 for hot code
# The job with other JVM options: session.JVM_OPTIONS is read when the session is built.
LAUNCH = ("import runpy, sys; import news_etl.session as session; session.JVM_OPTIONS = sys.argv.pop(1); "
          "runpy.run_module('news_etl', run_name='__main__', alter_sys=True)")  # fmt: skip


def batches(lines: list[tuple[float, str]]) -> list[tuple[float, int, int]]:
    """(seconds since the job started, records read, largest shard lag in ms) per batch line."""
    found = []
    for at, line in lines:
        if match := BATCH_LINE.match(line):
            lags = [int(ms) for _, ms in SHARD_LAG.findall(match[3])]
            found.append((at, int(match[2]), max(lags, default=0)))
    return found


def cpu_at(samples: list[tuple[float, float]], at: float) -> float:
    """The cgroup's CPU-s at ``at``, interpolated between the samples around it."""
    before = max((s for s in samples if s[0] <= at), default=samples[0])
    after = min((s for s in samples if s[0] >= at), default=samples[-1])
    if after[0] == before[0]:
        return before[1]
    return before[1] + (after[1] - before[1]) * (at - before[0]) / (after[0] - before[0])


def steady_run(moto, work: Path, jvm_options: str, rate: float, minutes: float, warm_up: float) -> dict:
    env = {**os.environ, **moto.env()}
    stream = new_stream(moto.client("kinesis"), 4)
    bucket = f"steady-{uuid.uuid4().hex[:10]}"
    moto.client("s3").create_bucket(Bucket=bucket)
    count = int(rate * minutes * 60)
    feeder_argv = [sys.executable, "-m", "news_populate", "--stream", stream, "--count", str(count),
                   "--rate", str(rate), "--seed", "7", "--bad-ratio", "0.05", "--dup-ratio", "0.05",
                   "--until", UNTIL]  # fmt: skip
    job_argv = [sys.executable, "-c", LAUNCH, jvm_options, "--stream", stream, "--bucket", bucket,
                "--checkpoint", str(work / f"checkpoint-{bucket}"), "--master", "local[2]",
                "--idle-timeout", "30"]  # fmt: skip
    feed = {"started": time.perf_counter()}
    feeder = subprocess.Popen(feeder_argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_for_feeder() -> None:
        feed["stderr"] = feeder.stderr.read()
        feeder.wait()
        feed["ended"] = time.perf_counter()

    waiter = threading.Thread(target=wait_for_feeder, daemon=True)
    waiter.start()
    try:
        result = measured_run(job_argv, env, timeout=minutes * 60 + 900, cpu_every=1.0)
    finally:
        if feeder.poll() is None:  # the job failed first: stop feeding a stream nobody reads
            feeder.kill()
    waiter.join()
    assert feeder.returncode == 0, feed["stderr"][-2000:]
    assert result.returncode == 0, result.stderr[-2000:]
    read = batches(result.lines)
    assert sum(n for _, n, _ in read) == count, (sum(n for _, n, _ in read), count)
    fed_for = feed["ended"] - feed["started"]
    start, end = warm_up, feed["ended"] - result.started  # the stretch costed: after warm-up, while fed
    inside = [(at, n, lag) for at, n, lag in read if start < at <= end]
    if not inside or not result.cpu_samples:
        raise RuntimeError(f"no batch ended, or no CPU was sampled (not root?), between {start:.0f} s and "
                           f"{end:.0f} s: feed for longer than the warm-up")  # fmt: skip
    records = sum(n for _, n, _ in inside)
    cpu = cpu_at(result.cpu_samples, end) - cpu_at(result.cpu_samples, start)
    lags = sorted(lag for _, _, lag in inside)
    first = [lag for at, _, lag in inside if at <= start + 60]
    last = [lag for at, _, lag in inside if at > end - 60]
    return {
        "jvm_options": jvm_options,
        "fed_rate": rate,
        "fed_actual": count / fed_for,  # populate's own pace: below --rate if the machine could not keep it
        "minutes": minutes,
        "records": count,
        "stretch_s": end - start,
        "batches": len(inside),
        "read_rate": records / (end - start),
        "cpu_s": cpu,
        "cpu_s_per_10k": cpu / records * 10_000,
        "cores": cpu / (end - start),
        "lag_ms": {
            "median": statistics.median(lags),
            "p95": lags[int(0.95 * (len(lags) - 1))],
            "max": lags[-1],
            "first_minute_median": statistics.median(first) if first else None,
            "last_minute_median": statistics.median(last) if last else None,
        },
        "whole_run": {"wall_s": result.wall_s, "cpu_s": result.cpu_s, "peak_rss": result.peak_rss},
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def to_markdown(runs: list[dict]) -> str:
    lines = [
        "| JVM options | fed (rec/s): asked / actual | read (rec/s) | CPU s / 10k | cores | lag ms: median / p95 / max "
        "| lag ms, median: first / last minute | batches |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for r in runs:
        lag = r["lag_ms"]
        cells = [
            f"`{r['jvm_options']}`",
            f"{r['fed_rate']:,.0f} / {r['fed_actual']:,.0f}",
            f"{r['read_rate']:,.0f}",
            f"{r['cpu_s_per_10k']:.2f}",
            f"{r['cores']:.2f}",
            " / ".join(_ms(lag[k]) for k in ("median", "p95", "max")),
            " / ".join(_ms(lag[k]) for k in ("first_minute_median", "last_minute_median")),
            str(r["batches"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000, help="records a second put into the stream")
    parser.add_argument("--minutes", type=float, default=10, help="how long the stream is fed, each run")
    parser.add_argument("--warm-up", type=float, help="seconds left out at the start (120, or a fifth of the feed)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = parser.parse_args()
    feed_s = args.minutes * 60
    if args.warm_up is None:
        args.warm_up = min(120.0, feed_s / 5)
    if not 0 <= args.warm_up < feed_s:
        parser.error(f"--warm-up must be at least 0 and less than the feed ({feed_s:g} s), got {args.warm_up:g}")
    work = Path(tempfile.mkdtemp(prefix="steady-"))
    runs = []
    for jvm_options in (JVM_OPTIONS, DEFAULT_TIERS):
        moto = start_moto(work)  # one per run: moto keeps every record in memory
        try:
            print(f"steady state, {args.minutes:g} min at {args.rate:,.0f} rec/s, JVM options {jvm_options!r}",
                  flush=True)  # fmt: skip
            runs.append(steady_run(moto, work, jvm_options, args.rate, args.minutes, args.warm_up))
            print(json.dumps(runs[-1]), flush=True)
        finally:
            moto.stop()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "steady.json").write_text(json.dumps(runs, indent=1))
    markdown = to_markdown(runs)
    (out / "steady.md").write_text(markdown)
    print("\n" + markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
