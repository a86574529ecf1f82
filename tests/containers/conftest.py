"""The container tests' engine: one podman API service for the session, Compose pointed at it."""

from __future__ import annotations

import pytest

from tests.containers.engine import Engine


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    engine = Engine(tmp_path_factory.mktemp("podman"))
    yield engine
    engine.close()
