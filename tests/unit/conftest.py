from __future__ import annotations

from collections.abc import Iterator

import pytest

from schemas.events import install_event_id_key

# Unit tests derive ids under a fixed key, as a deployment does under its own. Installed at
# import too: some modules build their sample events when they are collected.
TEST_EVENT_ID_KEY = b"casegate-unit-test-event-id-key"
install_event_id_key(TEST_EVENT_ID_KEY)


@pytest.fixture(autouse=True)
def event_id_key() -> Iterator[bytes]:
    previous = install_event_id_key(TEST_EVENT_ID_KEY)
    try:
        yield TEST_EVENT_ID_KEY
    finally:
        install_event_id_key(previous)
