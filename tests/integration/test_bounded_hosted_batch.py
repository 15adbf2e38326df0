"""One slow or hostile Nightscout never costs the other accounts of a hosted batch their run (issue 21).

The real worker handler (functions/worker/app.py) runs a batch of 10 accounts against the LibreLink Up
simulator, one Nightscout site each (NightscoutSites) and moto. One site drips its answers a byte every
half second (5,000 s for the body, or the simulator's own stop after 120 s): the other 9 upload in the same
invocation, and the invocation returns before the worker's Timeout in hosted.yaml.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from tools.hosted_stack import HostedStack
from tools.local_stack import HOSTED_TEMPLATE_PATH, load_function, read_template
from tools.run_handler import LocalContext
from tools.simulators.hostile_bodies import HostileBody

from linkup_sync.hosted import worker as worker_module
from linkup_sync.hosted.worker import AFTER_DEADLINE_S, INVOCATION_BUDGET_S, RETURN_MARGIN_S
from linkup_sync.report import RunReport
from linkup_sync.runtime import RUN_DEADLINE_S, Dependencies

WORKER_TIMEOUT_S = float(
    read_template(HOSTED_TEMPLATE_PATH)["Resources"]["SyncWorkerFunction"]["Properties"]["Timeout"]
)
DRIP = HostileBody("drip", size=10_000, interval_s=0.5)
SLOW = 4  # the account whose site drips


@dataclass
class WorkerContext(LocalContext):
    """What Lambda hands the worker: its time left is the whole Timeout at the start."""

    function_name: str = "SyncWorkerFunction"
    timeout_s: float = WORKER_TIMEOUT_S
    started: float = 0.0

    def get_remaining_time_in_millis(self) -> int:
        return int((self.timeout_s - (time.monotonic() - self.started)) * 1000)


def records(stack: HostedStack) -> list[dict[str, Any]]:
    return [
        {
            "messageId": f"m-{p.number}",
            "body": json.dumps({"account": p.account_id, "due": stack.minute, "interval": 5}),
        }
        for p in stack.people
    ]


def invoke(stack: HostedStack, batch: list[dict[str, Any]]) -> tuple[dict[str, Any], float]:
    app = load_function("worker")
    app.WORKER = stack.worker
    context = WorkerContext(started=time.monotonic())
    response: dict[str, Any] = app.handler({"Records": batch}, context)
    return response, time.monotonic() - context.started


def test_one_dripping_site_of_ten_costs_the_other_nine_nothing(stack: HostedStack) -> None:
    for _ in range(10):
        stack.add_person()
    stack.people[SLOW].site.hostile_next(5, DRIP)  # every answer of that site, the read-back first
    outcomes: list[Any] = []
    original = stack.worker.handle

    def keep(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        outcomes.extend(result.outcomes)
        return result

    stack.worker.handle = keep  # type: ignore[method-assign]
    response, seconds = invoke(stack, records(stack))
    print(f"\nhosted batch of 10, one site dripping: the invocation returned after {seconds:.1f} s")
    assert seconds < WORKER_TIMEOUT_S
    assert response == {"batchItemFailures": []}  # a failed run is not delivered again: the next interval is
    by_account = {o.account: o for o in outcomes}
    for number, person in enumerate(stack.people):
        outcome = by_account[person.account_id]
        if number == SLOW:
            assert (outcome.status, outcome.reason) == ("failed", "nightscout_unreachable")
            assert person.site.sgv_entries() == [] or len(person.site.sgv_entries()) <= 1
        else:
            assert outcome.status == "ran" and outcome.report is not None and outcome.report.uploaded >= 5
            assert len(person.site.sgv_entries()) == outcome.report.uploaded


def test_the_batch_returns_in_time_even_when_a_run_does_not_end(
    stack: HostedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net behind the deadlines: a run stuck beyond them (a bug, or a wait no deadline bounds)
    does not hold the batch. Accounts it could not start are delivered again; the stuck one is not."""
    people = [stack.add_person() for _ in range(3)]
    release = threading.Event()
    deadlines: dict[str, float] = {}

    def run(deps: Dependencies) -> RunReport:
        username = deps.credentials.get().username
        deadlines[username] = deps.deadline_s
        if username == people[0].email:
            release.wait(60)  # stuck far past every deadline
        return RunReport()

    monkeypatch.setattr(worker_module, "run_once", run)
    stack.worker.max_parallel = 1  # the others wait for a thread that never frees up in time
    time_left = RETURN_MARGIN_S + AFTER_DEADLINE_S + 4  # a budget of 12 s, runs get the 4 s left after storing
    started = time.monotonic()
    try:
        result = stack.worker.handle(records(stack), time_left_s=time_left)
    finally:
        release.set()
    assert time.monotonic() - started < time_left
    statuses = {o.account: (o.status, o.reason) for o in result.outcomes}
    assert statuses[people[0].account_id] == ("failed", "timeout")
    assert statuses[people[1].account_id] == statuses[people[2].account_id] == ("error", "no_time")
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-2"}]}
    # a run's deadline fits the invocation's time, less what a run stores after it
    assert list(deadlines) == [people[0].email]
    assert 0 < deadlines[people[0].email] <= time_left - RETURN_MARGIN_S - AFTER_DEADLINE_S


def test_the_budget_fits_hosted_yaml() -> None:
    """A run started at the beginning of the batch ends (deadline, then storing) before the batch returns,
    and the batch returns before the function's Timeout."""
    assert RUN_DEADLINE_S + AFTER_DEADLINE_S < INVOCATION_BUDGET_S < WORKER_TIMEOUT_S - RETURN_MARGIN_S + 1e-9
