"""Worker process of ``reloop study``: runs one arm in its workspace (see :mod:`.run`).

``python -m reloop.ops.study.worker ARM_DIR``. The thread count comes from the environment the study
sets (``RELOOP_TORCH_THREADS``), so an arm's figures do not depend on how many arms run at once.
"""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m reloop.ops.study.worker ARM_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(int(os.environ.get("RELOOP_TORCH_THREADS", "1")))
    from reloop.ops.study.run import run_arm

    return run_arm(argv[0])


if __name__ == "__main__":
    sys.exit(main())
