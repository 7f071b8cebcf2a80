"""Counts made inside an event loop are written once per loop turn, and still exactly."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from ml_platform.serving.plane import metrics

OK = {"tenant": "t-turn", "deployment": "d-turn", "status": "OK"}
BAD = dict(OK, status="INVALID_ARGUMENT")
REJECTED = {"code": "RESOURCE_EXHAUSTED"}


def value(name: str, labels: dict[str, str]) -> float:
    got = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if got is None else got


def snapshot() -> tuple[float, float, float]:
    return (
        value("mlp_serving_predictions_total", OK),
        value("mlp_serving_predictions_total", BAD),
        value("mlp_serving_rejections_total", REJECTED),
    )


def count(statuses: list[str]) -> None:
    for status in statuses:
        if status == "REJECTED":
            metrics.count_rejection("RESOURCE_EXHAUSTED")
        else:
            metrics.count_prediction("t-turn", "d-turn", status)


def expected(before: tuple[float, ...], statuses: list[str]) -> tuple[float, ...]:
    return (
        before[0] + statuses.count("OK"),
        before[1] + statuses.count("INVALID_ARGUMENT"),
        before[2] + statuses.count("REJECTED"),
    )


@settings(max_examples=25, deadline=None)
@given(turns=st.lists(st.lists(st.sampled_from(["OK", "INVALID_ARGUMENT", "REJECTED"]))))
def test_counts_of_each_loop_turn_are_exact_after_the_turn(turns: list[list[str]]) -> None:
    async def run() -> None:
        for statuses in turns:
            before = snapshot()
            count(statuses)
            await asyncio.sleep(0)
            assert snapshot() == expected(before, statuses)

    asyncio.run(run())


def test_render_writes_what_the_current_turn_counted() -> None:
    async def run() -> None:
        metrics.count_prediction("t-turn", "d-turn", "OK")
        text = metrics.render().decode()
        line = next(
            ln
            for ln in text.splitlines()
            if ln.startswith("mlp_serving_predictions_total{")
            and 'tenant="t-turn"' in ln
            and 'status="OK"' in ln
        )
        assert float(line.rsplit(" ", 1)[1]) == value("mlp_serving_predictions_total", OK)
        assert float(line.rsplit(" ", 1)[1]) >= 1.0

    before = snapshot()
    asyncio.run(run())
    assert snapshot() == expected(before, ["OK"])


def test_counts_left_by_a_loop_that_stopped_before_its_flush_are_written_by_the_next() -> None:
    before = snapshot()
    loop = asyncio.new_event_loop()

    def count_and_stop() -> None:
        count(["OK", "REJECTED"])
        loop.stop()  # the flush scheduled for the next turn never runs on this loop

    loop.call_soon(count_and_stop)
    loop.run_forever()
    loop.close()

    async def next_loop() -> None:
        count(["OK"])
        await asyncio.sleep(0)

    asyncio.run(next_loop())
    assert snapshot() == expected(before, ["OK", "REJECTED", "OK"])


def test_counts_outside_a_loop_are_written_at_once() -> None:
    before = snapshot()
    count(["INVALID_ARGUMENT", "OK"])
    assert snapshot() == expected(before, ["INVALID_ARGUMENT", "OK"])
