"""Run the benchmark: ``python benchmarks/run.py [--models 100,500] [--width 10] [--repeats 3] [--quick]``.

The same as ``dagctl-dagster bench ...``; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # started by path: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cli import add_arguments, command_line, run_from_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv), command=command_line(argv, "python benchmarks/run.py"))


if __name__ == "__main__":
    sys.exit(main())
