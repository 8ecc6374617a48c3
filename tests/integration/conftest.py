"""Integration tests: real PostgreSQL clusters made with initdb -k on free ports."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.integration.pg import PG_BIN, Lifeboat, Workspace

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def workspace() -> Iterator[Workspace]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL server binaries not found in {PG_BIN}")
    if os.geteuid() != 0 and shutil.which("runuser") is None:
        pytest.fail("integration tests run as root (they start PostgreSQL as postgres)")
    space = Workspace()
    yield space
    space.remove()


@pytest.fixture
def lifeboat(workspace: Workspace) -> Iterator[Lifeboat]:
    """A started cluster archiving into a fresh, initialised repository."""
    env = Lifeboat.create(workspace)
    try:
        env.cluster.start()
        env.run("init")
        yield env
    finally:
        env.cleanup()
