"""`python -m bench [all | PART ...]`: run benchmark parts, print their tables, write JSON.

Every part is a module with `HELP`, `add_arguments(parser)` and `run(args) -> BenchResult`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from pathlib import Path
from types import ModuleType

from bench.report import RESULTS_DIR, print_result, write_result

PARTS = {
    "embeddings": "bench.embeddings",
    "retrieval": "bench.retrieval_scale",
    "verified-matching": "bench.verified_matching",
    "reused-answers": "bench.reused_answers",
    "store": "bench.store_writes",
    "serving": "bench.serving_concurrency",
    "adapters": "bench.adapter_serving",
    "answer": "bench.answer_path",
    "answers": "bench.answer_quality",
    "slack": "bench.slack_load",
    "training": "bench.training_speed",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="dispatchbot benchmarks. Each part prints a table and writes "
        f"{RESULTS_DIR.relative_to(RESULTS_DIR.parents[1])}/PART.json.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and few repetitions: checks that a part runs, not how fast",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the JSON results (default bench/results/, or bench/results/quick/ "
        "with --quick, so a check never overwrites real figures)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at DEBUG")
    parts = parser.add_subparsers(dest="part", required=True, metavar="PART")
    parts.add_parser("all", help="every part in turn, with its defaults")
    modules = {name: importlib.import_module(path) for name, path in PARTS.items()}
    for name, module in modules.items():
        module.add_arguments(parts.add_parser(name, help=module.HELP, description=module.HELP))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    out = args.out or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    if args.part == "all":
        failed = [
            name for name, module in modules.items() if not _run_with_defaults(module, args, out)
        ]
        if failed:
            print(f"\nparts that failed: {', '.join(failed)}", file=sys.stderr)
        return 1 if failed else 0
    return 0 if _run(modules[args.part], args, out) else 1


def _run_with_defaults(module: ModuleType, args: argparse.Namespace, out: Path) -> bool:
    own = argparse.ArgumentParser()
    module.add_arguments(own)
    defaults = own.parse_args([])
    defaults.quick, defaults.verbose = args.quick, args.verbose
    return _run(module, defaults, out)


def _run(module: ModuleType, args: argparse.Namespace, out: Path) -> bool:
    started = time.time()
    try:
        result = module.run(args)
    except Exception as error:  # one broken part must not hide the others' figures
        logging.getLogger("bench").exception("%s failed", module.__name__)
        print(f"\n{module.__name__} failed: {error}", file=sys.stderr)
        return False
    print_result(result)
    path = write_result(result, started, out)
    print(f"\nwritten: {path}")
    return True


if __name__ == "__main__":
    sys.exit(main())
