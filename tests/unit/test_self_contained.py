"""The repository explains itself: no file points outside it, and every relative link in
its Markdown lands on a file inside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from infra.settings import PROJECT_ROOT

TEXT = {".py", ".md", ".toml", ".yaml", ".yml", ".avsc", ".sql", ".html", ".sh", ".txt", ".cfg"}
# Built from parts so this file does not match itself.
OUTSIDE = ("../" + "shared", "DESIGN" + ".md", "DESIGN" + " §", "DESIGN" + " section")
# Applied migrations are checksummed and never edited; the design sections their comments
# cite by number are the sections of docs/architecture.md, which says so.
IMMUTABLE = "infra/migrations/"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def tracked() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout
    files = [PROJECT_ROOT / name for name in out.decode().split("\0") if name]
    return [f for f in files if f.is_file() and (f.suffix in TEXT or f.name == "Makefile")]


def test_no_file_points_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(PROJECT_ROOT)}:{n}: {line.strip()}"
        for path in tracked()
        if not str(path.relative_to(PROJECT_ROOT)).startswith(IMMUTABLE)
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if any(marker in line for marker in OUTSIDE)
    ]
    assert found == [], "\n".join(found)


def test_every_relative_markdown_link_lands_inside_the_repository() -> None:
    broken = []
    for path in tracked():
        if path.suffix != ".md":
            continue
        for target in LINK.findall(path.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same file
            where = (path.parent / target.split("#", 1)[0]).resolve()
            if not where.is_relative_to(PROJECT_ROOT.resolve()) or not where.exists():
                broken.append(f"{path.relative_to(PROJECT_ROOT)}: {target}")
    assert broken == [], "\n".join(broken)
