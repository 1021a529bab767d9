"""Issue 12 (6): two workers of each processor share its partitions. A second worker joins
mid-stream (a rebalance under load), then the first is SIGKILLed (its partitions move to
the survivor once the group notices): 0 lost, 0 duplicated, as for a single worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from infra.settings import Settings
from schemas.codec import Codec
from schemas.events import Event, ExecutionFailed, ExecutionSucceeded, GuardrailDecided
from tests.integration.approval_flow import (
    CASES,
    EXECUTED,
    Operators,
    Worker,
    all_recommendations,
    assert_exactly_once,
    publish_cases,
    publish_flow_policy,
    settle,
    stopped_after,
)
from tests.integration.helpers import OUTPUT
from tests.integration.pipeline import Downstream, Tail

NAMES = ("guard", "approve", "execute")


@pytest.fixture
def workers(settings: Settings) -> Iterator[dict[tuple[str, int], Worker]]:
    with stopped_after({(n, i): Worker(settings, n, i) for n in NAMES for i in (0, 1)}) as procs:
        yield procs


def test_a_second_worker_joins_mid_stream_and_the_first_is_killed(
    settings: Settings, workers: dict[tuple[str, int], Worker]
) -> None:
    codec = Codec.load()
    with Downstream() as downstream:
        publish_flow_policy(settings, codec, downstream)
        recs = all_recommendations()
        out = Tail(settings, ("decisions", "executions"))
        operators = Operators(settings, codec)
        for name in NAMES:
            workers[(name, 0)].start()
        operators.start()
        # Fed over ~30 s, so that the join and the kill both land while cases flow.
        feeder = threading.Thread(target=publish_cases, args=(settings, codec, recs, 80.0))
        feeder.start()

        def done(kind: type[Event]) -> int:
            return len({r.event.event_id for r in out.records if isinstance(r.event, kind)})

        # Each move waits for work done before it (decisions and executions both: on a
        # loaded machine the executions trail the decisions by seconds).
        out.wait(
            lambda: done(GuardrailDecided) >= CASES // 4 and done(ExecutionSucceeded) > 0,
            timeout_s=90,
            what="a quarter",
        )
        for name in NAMES:
            workers[(name, 1)].start()
        joined_at = done(ExecutionSucceeded)
        out.wait(
            lambda: done(GuardrailDecided) >= CASES // 2 and done(ExecutionSucceeded) > joined_at,
            timeout_s=90,
            what="half",
        )
        time.sleep(3.0)  # the newcomers own partitions by now, with batches in flight
        for name in NAMES:
            workers[(name, 0)].kill()
        killed_at = done(ExecutionSucceeded)
        feeder.join(120)

        out.wait(
            lambda: (
                done(GuardrailDecided) >= CASES
                and done(ExecutionSucceeded) + done(ExecutionFailed) >= EXECUTED
            ),
            timeout_s=180,
            what=lambda: (
                f"everything after the kill; {done(GuardrailDecided)}/{CASES} decisions, "
                f"{done(ExecutionSucceeded)}/{EXECUTED} executions"
            ),
        )
        calls = settle(settings, operators, out, downstream)
    out.close()

    # Both moves happened mid-stream, with work left on both sides of each.
    assert 0 < joined_at < killed_at < EXECUTED, (joined_at, killed_at)
    for name in NAMES:
        log = (OUTPUT / f"{settings.topic_prefix}{name}-1-1.log").read_text()
        # It joined with a share, then took over the killed worker's partitions.
        assert log.count("assigned ") >= 2, f"{name}-1 never rebalanced: see its log"
    execution_ids, keys = assert_exactly_once(out.records, recs, out, calls)
    print(
        f"\nscale-out: {CASES} cases, {len(execution_ids)} executions; second workers joined "
        f"at {joined_at}, first killed at {killed_at} executions; downstream calls "
        f"{len(calls)} for {keys} keys"
    )
