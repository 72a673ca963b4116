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


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        if importlib.import_module(name).main([]) != 0:
            failed.append(name)
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
