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
* ``MKL_DYNAMIC=FALSE``: MKL keeps the thread count it was given whatever the load;
* ``NPY_DISABLE_CPU_FEATURES=X86_V4 AVX512_ICL AVX512_SPR``: NumPy's own kernels the same way.
  NumPy picks, per function, the best of the code paths it was built with (NumPy 2.4 names them
  ``X86_V2`` < ``X86_V3`` (AVX2 + FMA) < ``X86_V4`` (AVX-512) < ...), and the paths round
  differently: the built-in world's float32 ``sin``/``cos`` of the users' taste drift, for one,
  moved the true click probabilities by up to 2e-7 (relative) between two of them. Switching the
  AVX-512 paths off leaves every x86-64 machine with AVX2 on the ``X86_V3`` path. On a machine
  without AVX-512 it changes nothing.

MKL and NumPy read these once, when they load, so they must be in the environment before
``torch`` or ``numpy`` is imported: :func:`pin_numerics` is called by the ``reloop`` command line
before any command runs, by :func:`reloop.stages.run_stage` (the DAG's tasks, ``reloop study``'s
workers), and is part of the environment ``reloop backfill`` gives Airflow. Set
``RELOOP_NATIVE_NUMERICS=1`` to leave both to their own choice (a little faster on AVX-512
machines; results then depend on the machine).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping

__all__ = ["NATIVE_SWITCH", "PINNED", "READ_BY", "pin_numerics"]

log = logging.getLogger(__name__)

#: What :func:`pin_numerics` sets (a value the user already set is kept).
PINNED: dict[str, str] = {"MKL_CBWR": "AVX2", "MKL_DYNAMIC": "FALSE",
                          "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
#: The module that reads each variable of :data:`PINNED` when it loads.
READ_BY: dict[str, str] = {"MKL_CBWR": "torch", "MKL_DYNAMIC": "torch",
                           "NPY_DISABLE_CPU_FEATURES": "numpy"}
#: ``RELOOP_NATIVE_NUMERICS=1``: do not pin (each machine's fastest MKL path).
NATIVE_SWITCH = "RELOOP_NATIVE_NUMERICS"


def pin_numerics(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set :data:`PINNED` in ``environ`` (default: this process's) where unset; returns what it
    set. Does nothing with ``RELOOP_NATIVE_NUMERICS=1``. In this process a variable takes effect
    only if the module that reads it (:data:`READ_BY`) is not imported yet (a warning says so
    otherwise)."""
    env = os.environ if environ is None else environ
    if env.get(NATIVE_SWITCH, "").strip().lower() in ("1", "true", "yes"):
        return {}
    missing = {k: v for k, v in PINNED.items() if k not in env}
    env.update(missing)
    if environ is None:
        for module in sorted({READ_BY[k] for k in missing} & set(sys.modules)):
            late = ", ".join(f"{k}={v}" for k, v in missing.items() if READ_BY[k] == module)
            log.warning("%s set after %s was imported: this process keeps %s's own code path "
                        "(results may differ from other machines' in the last digits)",
                        late, module, module)
    return missing
