from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.settings import Settings
from tests.stack import Stack, open_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)
        if "tests/browser" in str(item.path):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with open_stack() as s:
        try:
            yield s
        finally:
            s.cleanup()


@pytest.fixture
def settings(stack: Stack) -> Settings:
    """Per-test settings: own topic prefix, own migrated database."""
    return stack.isolated()
