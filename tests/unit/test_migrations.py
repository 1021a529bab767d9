"""Migrations are numbered files applied in order; a misnamed or duplicate file is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.db import MIGRATIONS, load_migrations


def test_bundled_migrations_are_ordered_and_unique() -> None:
    found = load_migrations(MIGRATIONS)
    versions = [m.version for m in found]
    assert versions == sorted(versions)
    assert versions[0] == 1
    assert len(set(versions)) == len(versions)


@pytest.mark.parametrize("names", [["1_short.sql"], ["001_Upper.sql"], ["001_a.sql", "001_b.sql"]])
def test_bad_migration_names_are_refused(tmp_path: Path, names: list[str]) -> None:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(ValueError):
        load_migrations(tmp_path)
