"""The one supervision policy of background work (:mod:`simulcast.periodic`), the per-node
registry that starts and stops it (:mod:`simulcast.control.background`), and ``/healthz``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from simulcast.control.background import Background
from simulcast.metrics import BACKGROUND_FAILURES
from simulcast.periodic import Periodic
from tests.support import ServerProcess, poll_until, wait_for


async def test_a_failing_pass_is_logged_counted_and_retried() -> None:
    passes: list[int] = []

    async def flaky() -> None:
        passes.append(len(passes))
        if len(passes) <= 2:
            raise RuntimeError(f"fault {len(passes)}")

    before = BACKGROUND_FAILURES.labels(job="flaky")._value.get()
    job = Periodic("flaky", flaky, 0.01, backoff_max=0.05)
    job.start()

    async def recovered() -> bool:
        return job.status().state == "running"

    await poll_until(recovered, 5, "the job to recover")
    await job.stop()
    status = job.status()
    assert status.failures == 2
    assert status.last_error == "RuntimeError: fault 2"
    assert status.last_tick_ms is not None
    assert status.state == "stopped"
    assert BACKGROUND_FAILURES.labels(job="flaky")._value.get() == before + 2


async def test_wake_runs_the_next_pass_at_once() -> None:
    passes = 0

    async def count() -> None:
        nonlocal passes
        passes += 1

    job = Periodic("hourly", count, 3600)
    job.start()

    async def first() -> bool:
        return passes == 1

    await poll_until(first, 5, "the first pass")
    job.wake()

    async def second() -> bool:
        return passes == 2

    await poll_until(second, 5, "the woken pass")
    await job.stop()


async def test_stop_lets_the_pass_in_progress_finish() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    async def slow() -> None:
        entered.set()
        await release.wait()
        finished.append(True)

    job = Periodic("slow", slow, 3600)
    job.start()
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.create_task(job.stop())
    await asyncio.sleep(0)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert finished == [True]


async def test_components_stop_in_reverse_order_and_a_failed_start_unwinds() -> None:
    calls: list[str] = []

    def step(what: str, fail: bool = False) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            calls.append(what)
            if fail:
                raise RuntimeError(what)

        return run

    background = Background()
    for name in ("a", "b"):
        background.add(name, start=step(f"start {name}"), stop=step(f"stop {name}"))
    background.add("only-stops", stop=step("stop only-stops"))
    await background.start()
    await background.stop()
    assert calls == ["start a", "start b", "stop only-stops", "stop b", "stop a"]

    calls.clear()
    broken = Background()
    broken.add("a", start=step("start a"), stop=step("stop a", fail=True))
    broken.add("b", start=step("start b", fail=True), stop=step("stop b"))
    with pytest.raises(RuntimeError):
        await broken.start()
    assert calls == ["start a", "start b", "stop a"]


def test_healthz_shows_every_background_job_with_its_last_pass(server: ServerProcess) -> None:
    def jobs() -> dict[str, dict[str, object]] | None:
        body = httpx.get(server.base_url + "/healthz", timeout=5).json()
        named = {job["name"]: job for job in body["jobs"]}
        return named if named["billing-meter"]["lastTickMs"] is not None else None

    named = wait_for(jobs, 10, "the meter's first pass")
    assert {
        "webhook-dispatch",
        "archiver",
        "hls-dvr-janitor",
        "bandwidth-flush",
        "instance-runner",
        "billing-meter",
        "lightning-sweep",
        "tip-sweep",
    } <= set(named)
    assert named["billing-meter"]["state"] == "running"
    assert named["billing-meter"]["failures"] == 0
