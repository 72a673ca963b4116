"""reloop: keep a CTR ranking model learning from its own mistakes in production.

* ReLoop (SIGIR 2022): a self-correction loss, :func:`reloop.learn.losses.reloop_loss`.
* ReLoop2 (KDD 2023): an error memory that compensates predictions at serving time.

Importing the package does nothing beyond defining names: no files, logging or network.
"""

__version__ = "0.1.0"
