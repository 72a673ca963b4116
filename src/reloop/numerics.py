"""Floating point that is the same on every machine and under any load (the default), and the
switch back to each machine's fastest kernels.

PyTorch's CPU build does its matrix products with Intel MKL. By default MKL picks its code path
for the CPU it runs on (AVX-512 or AVX2) and may change its thread count with the machine's
load, and the paths round differently: a last-digit difference in one model changes which items
the world shows the next day, so two demos drift apart a few days later (what was measured:
``docs/measurements.md``, "Numerics").

:func:`pin_numerics` therefore sets, unless already set:

* ``MKL_CBWR=AVX2``: MKL's conditional numerical reproducibility, on the AVX2 code path that every
  x86-64 CPU since 2013 (Intel Haswell, AMD Zen) runs identically;
* ``MKL_DYNAMIC=FALSE``: MKL keeps the thread count it was given whatever the load.

MKL reads both once, when it starts, so they must be in the environment before ``torch`` is
imported: :func:`pin_numerics` is called by the ``reloop`` command line before any command runs,
by :func:`reloop.stages.run_stage` (the DAG's tasks, ``reloop study``'s workers), and is part of
the environment ``reloop backfill`` gives Airflow. Set ``RELOOP_NATIVE_NUMERICS=1`` to leave MKL
to its own choice (a little faster on AVX-512 machines; results then depend on the machine).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping

__all__ = ["NATIVE_SWITCH", "PINNED", "pin_numerics"]

log = logging.getLogger(__name__)

#: What :func:`pin_numerics` sets (a value the user already set is kept).
PINNED: dict[str, str] = {"MKL_CBWR": "AVX2", "MKL_DYNAMIC": "FALSE"}
#: ``RELOOP_NATIVE_NUMERICS=1``: do not pin (each machine's fastest MKL path).
NATIVE_SWITCH = "RELOOP_NATIVE_NUMERICS"


def pin_numerics(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set :data:`PINNED` in ``environ`` (default: this process's) where unset; returns what it
    set. Does nothing with ``RELOOP_NATIVE_NUMERICS=1``. In this process it takes effect only if
    torch is not imported yet (a warning says so otherwise)."""
    env = os.environ if environ is None else environ
    if env.get(NATIVE_SWITCH, "").strip().lower() in ("1", "true", "yes"):
        return {}
    missing = {k: v for k, v in PINNED.items() if k not in env}
    env.update(missing)
    if missing and environ is None and "torch" in sys.modules:
        log.warning("%s set after torch was imported: this process keeps MKL's own code path "
                    "(results may differ from other machines' in the last digits)",
                    ", ".join(f"{k}={v}" for k, v in missing.items()))
    return missing
