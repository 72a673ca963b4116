"""The ``serving`` section of ``params.yaml``: how the production scorer serves (the built-in
world, the replay and a live server alike).
"""

from __future__ import annotations

from pydantic import Field

from reloop.config.base import Section

__all__ = ['ServingConfig']


class ServingConfig(Section):
    """* ``use_memory``: compensate base scores with the ReLoop2 error memory and write arriving
      labels into it (``false`` serves the base model alone).
    * ``batch_size``: rows per forward pass when scoring.
    * ``bootstrap_score``: the probability the bootstrap policy logs while no model exists yet.
    """


    use_memory: bool = True
    batch_size: int = Field(default=65536, ge=1)
    bootstrap_score: float = Field(default=0.05, gt=0.0, lt=1.0)
