"""The benchmarks' results as markdown tables (printed and written to bench/results) and a PNG plot."""

from __future__ import annotations

from pathlib import Path

MIB = 2**20
GOAL_NAMES = {
    "etl_vs_drain": "ETL throughput / raw drain",
    "etl_vs_naive": "ETL throughput / naive baseline",
    "cpu_vs_drain": "ETL CPU per record / drain's",
    "memory_200k_vs_50k": "ETL peak RSS, biggest / middle backlog",
}


def publish(table: str, out: str, name: str) -> None:
    """Print a markdown table and write it to ``out/name``."""
    print(table)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / name).write_text(table + "\n")


def _run_row(run: dict) -> str:
    rss, cpu = run["peak_rss"], run["cpu_s"]
    memory = " / ".join(f"{rss.get(k, 0) / MIB:.0f}" for k in ("total", "jvm", "python driver", "python workers"))
    cells = [
        run["tool"],
        run["emulator"],
        str(run["shards"]),
        f"{run['records']:,}",
        f"{run['wall_s']:.1f}",
        f"{run['rate']:,.0f}" if run["rate"] else "-",
        f"{cpu:.1f}" if cpu is not None else "-",
        f"{cpu / run['records'] * 10_000:.2f}" if cpu is not None else "-",
        memory,
    ]
    return "| " + " | ".join(cells) + " |"


def to_markdown(results: dict) -> str:
    lines = [
        "| tool | emulator | shards | records | wall (s) | rate (rec/s) | CPU (s) | CPU s / 10k "
        "| peak RSS MiB: total / JVM / Python driver / workers |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *(_run_row(run) for run in results["runs"]),
        "",
        "| marginal (moto, 4 shards) | rate (rec/s) | CPU s / 10k records |",
        "| --- | ---: | ---: |",
    ]
    for tool, figures in results["marginal"].items():
        cpu = figures.get("cpu_s_per_10k")
        lines.append(f"| {tool} | {figures['rate']:,.0f} | {'-' if cpu is None else f'{cpu:.2f}'} |")
    by_kind = results["marginal"]["etl"].get("cpu_by_kind_per_10k")
    if by_kind:  # sampled from /proc, so the parts need not add up to the cgroup's exact total
        lines.append("| etl, by process (sampled) | | " + ", ".join(f"{k} {v:.2f}" for k, v in by_kind.items()) + " |")
    lines += ["", "| goal | measured | target | met |", "| --- | ---: | ---: | --- |"]
    for name, goal in results["goals"].items():
        sign = ">=" if name.startswith("etl") else "<="
        met = "yes" if goal["met"] else "NO"
        lines.append(f"| {GOAL_NAMES[name]} | {goal['measured']:.2f}x | {sign} {goal['target']}x | {met} |")
    lean = results.get("against_lean_drain")
    if lean:
        lines += ["", f"against the lean drain (a reference, no target): throughput {lean['rate']:.2f}x"
                  + (f", CPU per record {lean['cpu']:.2f}x" if "cpu" in lean else "")]  # fmt: skip
    p = results["populate"]
    lines += [
        "",
        f"populate: {p['populate_rate']:,.0f} rec/s; a bare PutRecords loop: {p['bare_rate']:,.0f} rec/s "
        f"({p['records']:,} records, medians): {p['ratio']:.2f}x",
    ]
    return "\n".join(lines) + "\n"


def _points(runs: list[dict], x: str, y: str, **where) -> list[tuple]:
    return sorted((r[x], r[y]) for r in runs if all(r[k] == v for k, v in where.items()) and r[y])


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, medium = results["runs"], results["sizes"][1]
    figure, (by_shards, by_size, memory) = plt.subplots(1, 3, figsize=(15, 4.5))
    for tool, marker in (("drain", "o"), ("etl", "s")):
        points = _points(runs, "shards", "rate", tool=tool, emulator="moto", records=medium)
        by_shards.plot(*zip(*points, strict=True), marker=marker, label=tool)
    by_shards.set(title=f"throughput by shards (moto, {medium:,} records)", xlabel="shards", ylabel="records/s")
    for tool, marker in (("drain", "o"), ("etl", "s"), ("naive", "^")):
        points = _points(runs, "records", "wall_s", tool=tool, emulator="moto", shards=4)
        by_size.plot(*zip(*points, strict=True), marker=marker, linestyle="", label=tool)
    by_size.set(title="wall time by records (moto, 4 shards)", xlabel="records", ylabel="seconds")
    etl = [r for r in runs if (r["tool"], r["emulator"], r["shards"]) == ("etl", "moto", 4)]
    for kind in ("total", "jvm", "python workers", "python driver"):
        sizes = [r["peak_rss"].get(kind, 0) / MIB for r in etl]
        memory.plot([r["records"] for r in etl], sizes, marker="o", linestyle="", label=kind)
    memory.set(title=f"ETL peak RSS (batches of {results['batch']:,})", xlabel="records", ylabel="MiB")
    for axes in (by_shards, by_size, memory):
        axes.legend()
        axes.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
