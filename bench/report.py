"""What every benchmark part shares: percentiles, the machine's description, tables printed
for people and JSON written for the record."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bot.docgen.markdown import number

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
_PACKAGES = (
    "torch",
    "sentence-transformers",
    "onnxruntime",
    "qdrant-client",
    "slack-bolt",
    "sqlalchemy",
    "transformers",
    "peft",
    "trl",
)


@dataclass(frozen=True)
class Table:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]


@dataclass
class BenchResult:
    """One part's outcome. `findings` holds the headline figures and same-run ratios."""

    name: str  # the results file is results/<name>.json
    title: str
    tables: list[Table]
    findings: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    """n, p50, p95, p99, mean and max of a list of latencies in milliseconds."""
    return {
        "n": len(values_ms),
        "p50": percentile(values_ms, 50),
        "p95": percentile(values_ms, 95),
        "p99": percentile(values_ms, 99),
        "mean": sum(values_ms) / len(values_ms) if values_ms else math.nan,
        "max": max(values_ms) if values_ms else math.nan,
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on: without this they mean nothing."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": _memory_gib(),
        "gpu": _gpu(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "commit": _git_commit(),
    }


def format_table(table: Table) -> str:
    cells = [[number(value) for value in row] for row in table.rows]
    widths = [
        max([len(column), *(len(row[index]) for row in cells)])
        for index, column in enumerate(table.columns)
    ]
    lines = [
        table.title,
        "  ".join(column.ljust(width) for column, width in zip(table.columns, widths, strict=True)),
        "  ".join("-" * width for width in widths),
    ]
    for row in cells:
        # Text left, numbers right, the way a reader scans a column of figures.
        lines.append(
            "  ".join(
                value.rjust(width) if _numeric(value) else value.ljust(width)
                for value, width in zip(row, widths, strict=True)
            )
        )
    return "\n".join(lines)


def print_result(result: BenchResult) -> None:
    print(f"\n== {result.title} ==")
    for table in result.tables:
        print()
        print(format_table(table))
    if result.findings:
        print()
        for key, value in result.findings.items():
            print(f"{key}: {number(value)}")
    for note in result.notes:
        print(f"note: {note}")


def write_result(result: BenchResult, started_at: float, directory: Path = RESULTS_DIR) -> Path:
    """results/<name>.json: the machine, when, how long, the settings and every table."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.name}.json"
    document = {
        "name": result.name,
        "title": result.title,
        "measured_at": datetime.fromtimestamp(started_at, UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started_at, 1),
        "machine": machine(),
        "config": result.config,
        "findings": result.findings,
        "tables": [
            {
                "title": table.title,
                "columns": list(table.columns),
                "rows": [list(row) for row in table.rows],
            }
            for table in result.tables
        ],
        "notes": result.notes,
    }
    # Strict JSON has no NaN: a figure that could not be measured is written as null.
    text = json.dumps(_without_nan(document), indent=2, default=_json_default, allow_nan=False)
    path.write_text(text + "\n", "utf-8")
    return path


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is zero or missing."""
    return numerator / denominator if denominator else math.nan


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit() or text == "-"


def _without_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "__dataclass_fields__"):
        return _without_nan(asdict(value))
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _gpu() -> str | None:
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return None
    try:
        found = subprocess.run(  # noqa: S603 - a fixed query to the driver's own tool
            [nvidia_smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        found = subprocess.run(  # noqa: S603 - a fixed git query
            [git, "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip()
