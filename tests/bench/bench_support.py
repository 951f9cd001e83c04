"""Running a benchmark part from a test: its own options, at the `--quick` sizes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import ModuleType

from bench.report import BenchResult


def part_parser(part: ModuleType) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    part.add_arguments(parser)
    return parser


def run_part(part: ModuleType, options: Sequence[str]) -> BenchResult:
    """`python -m bench --quick PART OPTIONS`, in this process."""
    args = part_parser(part).parse_args(list(options))
    args.quick, args.verbose = True, False
    return part.run(args)
