"""Fixtures of the data tests: a tiny built-in world in a temporary directory.

``world_root`` simulates two bootstrap days once per session; tests that corrupt data work on a
copy (:func:`tests.support.tables.copy_world`), so the session copy is never modified.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tables import simulate_world


@pytest.fixture(scope="session")
def world_root(tmp_path_factory) -> Path:
    """Two simulated bootstrap days (2026-01-05, 2026-01-06), read-only for tests."""
    return simulate_world(tmp_path_factory.mktemp("world"))
