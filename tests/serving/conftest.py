"""Fixtures of the serving tests: ``reloop serve`` processes (:class:`tests.support.serving.Server`)
stopped at the end of each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.serving import Server


@pytest.fixture()
def server_factory(tmp_path):
    servers: list[Server] = []

    def make(params, workdir: Path | None = None) -> Server:
        s = Server(params, workdir or tmp_path)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()
