"""Run every benchmark in turn (``make bench``)."""

from __future__ import annotations

import importlib
import sys

#: Every benchmark module; each has a ``main(argv) -> int``.
BENCHMARKS = [
    "benchmarks.train_throughput",
    "benchmarks.simulator",
    "benchmarks.join",
    "benchmarks.error_memory",
    "benchmarks.reloop_offline",
    "benchmarks.serving",
]

#: Arguments of the runs whose figures the README quotes (the offline protocol at 5 seeds).
ARGS = {"benchmarks.reloop_offline": ("--seeds", "5")}


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        if importlib.import_module(name).main(list(ARGS.get(name, ()))) != 0:
            failed.append(name)
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
