"""Benchmark report math: medians, ratios, targets, the markdown table and RESULTS.md.

Example::

    native = Series("native `sqlmesh run`", models=100, unit="s", samples=[2.4, 2.5, 2.3])
    claim = Series("claim-aware `bench_run`", models=100, unit="s", samples=[3.1, 3.0, 3.3])
    row = ratio_row("claim-aware / native run", claim, native, Target("<=", 1.5))
    print(markdown_table([row]))
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

GIB = 1024**3
RESULTS_BEGIN = "<!-- bench:results:begin -->"
RESULTS_END = "<!-- bench:results:end -->"


@dataclass(frozen=True)
class Target:
    """``value <op> limit`` must hold, e.g. ``Target("<=", 1.5)``."""

    op: str
    limit: float
    unit: str = ""

    def __post_init__(self) -> None:
        if self.op not in ("<=", ">="):
            raise ValueError(f"target operator must be '<=' or '>=' (got {self.op!r})")

    def met(self, value: float) -> bool:
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def describe(self) -> str:
        symbol = "≤" if self.op == "<=" else "≥"
        return f"{symbol} {_number(self.limit)}{(' ' + self.unit) if self.unit else ''}"


@dataclass
class Series:
    """Repeated measurements of one contender at one project size."""

    label: str
    models: int | None
    unit: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        if not self.samples:
            raise ValueError(f"no samples for {self.label}")
        return statistics.median(self.samples)

    def describe(self) -> str:
        runs = ", ".join(_number(s) for s in self.samples)
        return f"{self.label}: median {_number(self.median)} {self.unit} ({runs})"


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    measure: str
    models: int | None
    value: float
    unit: str
    detail: str
    target: Target | None = None
    # The same measure for the floor measured beside it (stock Dagster's time outside the run
    # plus the engine's own in-run time): a target the floor itself misses is out of reach.
    floor: float | None = None

    @property
    def result(self) -> str:
        if self.target is None:
            return ""
        if self.target.met(self.value):
            return "pass"
        if self.floor is not None and not self.target.met(self.floor):
            return f"out of reach: the floor is {_number(self.floor)}{_unit(self.unit)}"
        return "miss"


def ratio(numerator: Series, denominator: Series) -> float:
    """Ratio of the two medians (the median is robust to one slow repetition)."""
    bottom = denominator.median
    if bottom <= 0:
        raise ValueError(f"cannot divide by the median of {denominator.label} ({bottom})")
    return numerator.median / bottom


def ratio_row(
    measure: str, numerator: Series, denominator: Series, target: Target | None, floor: float | None = None
) -> Row:
    return Row(
        measure=measure,
        models=numerator.models,
        value=ratio(numerator, denominator),
        unit="×",
        detail=f"{numerator.describe()}; {denominator.describe()}",
        target=target,
        floor=floor,
    )


def value_row(measure: str, series: Series, target: Target | None = None, floor: float | None = None) -> Row:
    return Row(measure, series.models, series.median, series.unit, series.describe(), target, floor)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| Measure | Models | Value | Target | Result | Detail (median, then every run) |",
        "|---|---:|---:|---|---|---|",
    ]
    for row in rows:
        value = f"{_number(row.value)}{_unit(row.unit)}"
        lines.append(
            f"| {row.measure} | {row.models if row.models is not None else ''} | {value} | "
            f"{row.target.describe() if row.target else ''} | {row.result} | {row.detail}{_floor_detail(row)} |"
        )
    return "\n".join(lines)


def machine_description() -> dict[str, str]:
    """nproc, memory, CPU model and the versions the numbers were taken with."""
    return {
        "nproc": str(os.cpu_count()),
        "memory": _memory_total(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "dagster": _version("dagster"),
        "sqlmesh": _version("sqlmesh"),
        "duckdb": _version("duckdb"),
        "git commit": _git_commit(),
    }


def results_section(
    rows: Sequence[Row], *, command: str, notes: Sequence[str] = (), now: _dt.datetime | None = None
) -> str:
    now = now or _dt.datetime.now(_dt.UTC)
    machine = machine_description()
    parts = [
        RESULTS_BEGIN,
        f"Measured {now.strftime('%Y-%m-%d %H:%M UTC')} with:",
        "",
        "```",
        command,
        "```",
        "",
        "Machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()) + ".",
        "",
        markdown_table(rows),
    ]
    if notes:
        parts += ["", *[f"- {note}" for note in notes]]
    parts.append(RESULTS_END)
    return "\n".join(parts)


def write_results(path: Path, section: str) -> None:
    """Replace the generated section of RESULTS.md (between the markers), keeping the prose around it."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    pattern = re.compile(re.escape(RESULTS_BEGIN) + r".*?" + re.escape(RESULTS_END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text if text.endswith("\n") else text + "\n")


def _floor_detail(row: Row) -> str:
    return "" if row.floor is None else f"; floor with the engine: {_number(row.floor)}{_unit(row.unit)}"


def _unit(unit: str) -> str:
    return unit if unit == "×" else f" {unit}"


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) * 1024 / GIB:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
