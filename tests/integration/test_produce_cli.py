"""`casegate produce FILE.jsonl`: validated first, then sent whole (or not at all)."""

from __future__ import annotations

from pathlib import Path

from infra.settings import PROJECT_ROOT, Settings
from schemas.codec import Codec
from schemas.jsonform import loads
from tests.integration.helpers import casegate, read_topic

EXAMPLES = PROJECT_ROOT / "examples" / "cases.jsonl"


def test_a_bad_line_is_reported_by_number_and_nothing_is_sent(
    settings: Settings, tmp_path: Path
) -> None:
    lines = EXAMPLES.read_text().splitlines()
    lines.insert(2, '{"event_type": "CaseOpened", "case_id": "c"}')
    lines.insert(4, "not json at all")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")

    result = casegate(settings, "produce", str(bad))

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{bad}:3:" in result.stderr
    assert f"{bad}:5:" in result.stderr
    assert "nothing was sent" in result.stderr
    assert read_topic(settings, "upstream", expect=1, timeout_s=5) == []


def test_the_example_file_is_published_keyed_by_case(settings: Settings) -> None:
    result = casegate(settings, "produce", str(EXAMPLES))
    assert result.returncode == 0, result.stdout + result.stderr

    expected = [loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]
    # As an upstream service: to the intake topic, which intake validates.
    got = read_topic(settings, "upstream", expect=len(expected))
    codec = Codec.load()
    events = sorted((codec.decode(m.value(), m.headers()) for m in got), key=lambda e: e.event_id)
    assert events == sorted(expected, key=lambda e: e.event_id)
    assert all(m.key() == codec.decode(m.value(), m.headers()).case_id.encode() for m in got)
