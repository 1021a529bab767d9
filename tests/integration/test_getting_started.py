"""The README's "Getting started with your own desk", run as written: its bash block is
read from the README and each command runs against the test stack (a command ending in
`&` runs in the background until the end); every step must succeed, and the last one
must show the shadow workflows' alignment over the new cases once they resolved."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys

from infra.settings import PROJECT_ROOT, Settings
from schemas.events import CaseResolved
from schemas.jsonform import loads
from tests.integration.helpers import OUTPUT, eventually, stop_all
from tests.stack import env_for

README = PROJECT_ROOT / "README.md"
SECTION = "## Getting started with your own desk"


def guide_steps() -> list[str]:
    """The commands of the guide's bash block, comments stripped, in order."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    [block] = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    steps = [line.split("  #", 1)[0].strip() for line in block.splitlines()]
    return [step for step in steps if step]


def command(step: str) -> list[str]:
    """`casegate …` as the CLI module of this checkout, under this interpreter."""
    words = shlex.split(step.removesuffix("&"))
    assert words[0] == "casegate", f"a guide step that is not a casegate command: {step}"
    return [sys.executable, "-m", "cli.main", *words[1:]]


def test_the_guide_has_fewer_than_ten_steps_that_all_name_existing_files() -> None:
    steps = guide_steps()
    assert 0 < len(steps) < 10
    for step in steps:
        for word in shlex.split(step.removesuffix("&")):
            if word.startswith("examples/"):
                assert (PROJECT_ROOT / word).is_file(), f"{step}: {word} is missing"


def test_the_getting_started_steps_run_as_written(settings: Settings) -> None:
    env = env_for(settings)
    background: list[subprocess.Popen[bytes]] = []
    outputs: list[str] = []
    try:
        for step in guide_steps():
            if step.endswith("&"):
                log = (OUTPUT / f"{settings.topic_prefix}guide-run.log").open("wb")
                background.append(
                    subprocess.Popen(
                        command(step), env=env, cwd=PROJECT_ROOT, stdout=log, stderr=log
                    )
                )
                continue
            done = subprocess.run(
                command(step),
                env=env,
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"{step}\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
        # The last step again, until every new case that ends resolved was compared.
        new = [
            loads(line)
            for line in (PROJECT_ROOT / "examples/desk/cases.jsonl").read_text().splitlines()
            if line.strip()
        ]
        last = {e.case_id: e for e in new}
        resolved = sum(isinstance(e, CaseResolved) for e in last.values())

        def compared() -> int:
            done = subprocess.run(
                command(guide_steps()[-1]),
                env=env,
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            rows = [line for line in done.stdout.splitlines() if "shadow" in line]
            counts = [int(m.group(1)) for r in rows if (m := re.search(r"│\s*(\d+)\s*│", r))]
            return sum(counts) if sum(counts) == resolved else 0

        total = eventually(compared, timeout_s=240, what=f"alignment over {resolved} cases")
    finally:
        stop_all(background, signal.SIGINT, timeout_s=60)
    assert total == resolved > 0
    evaluated, imported = outputs[2], outputs[4]
    assert "ALL" in evaluated and "hit rate" in evaluated
    assert "imported 400 resolved case(s)" in imported
