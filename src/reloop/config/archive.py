"""The ``archive`` section of ``params.yaml``: per-period versioning in a git + DVC repository."""

from __future__ import annotations

from pydantic import Field

from reloop.config.base import Section

__all__ = ['ArchiveConfig']


class ArchiveConfig(Section):
    """Per-period versioning: every artefact of a period committed to a git + DVC repository.

    The archive is its own git repository (``root``), not the code repository, so scheduled runs
    never add commits to your code's history. Point ``root`` at the code repository's root only if
    you want period commits there.
    """

    enabled: bool = Field(default=True, description="commit each period after promote")
    root: str = Field(default="data/archive", description="git + DVC repository of the periods")
    remote: str = Field(
        default="data/archive-remote",
        description="DVC remote: a local directory, or a URL such as s3://bucket/reloop",
    )
    push: bool = Field(default=True, description="`dvc push` after each period's commit")
    push_timeout_s: float = Field(
        default=3600.0, gt=0,
        description="a push still running after this long is stopped and the stage fails",
    )
