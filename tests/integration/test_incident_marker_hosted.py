"""Issue 25 in the hosted worker: an account's open incidents come with its state's Query, so a steady run
never reads the incidents, the hourly run included; the marker sits in the account's own partition.

The hosted stack of tools/hosted_stack.py (moto's DynamoDB, SQS and KMS in process, the LibreLink Up
simulator, a Nightscout stand-in per site) on a virtual clock; the worker's calls counted by a botocore
hook on its own clients and named by partition (tools/dynamodb_units.label).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tools.dynamodb_units import label
from tools.hosted_stack import HostedStack

from linkup_sync.state.dynamodb import DynamoDBStateStore
from linkup_sync.state.model import account_key
from tests.support.moto_hosted import worker_on_recorded_clients

CLAIM = "worker: claim (registry UpdateItem)"
LOAD = "worker: state load (Query)"
RECORD = "worker: upload record (target UpdateItem)"
INCIDENTS = "worker: incidents (Query)"
MARKER = "worker: incident marker (UpdateItem)"


class WorkerCalls:
    """Every DynamoDB and KMS request of the worker's own clients, by what it is for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-parameter-build", self._seen)
        return client

    def _seen(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.service_model.endpoint_prefix == "kms":
            self.calls.append(f"kms {model.name}")
            return
        key = params.get("Key") or {"pk": params.get("ExpressionAttributeValues", {}).get(":pk", {})}
        self.calls.append(label(model.name, key))

    def since(self, start: int) -> list[str]:
        return self.calls[start:]


@pytest.fixture
def hosted(aws: None) -> Iterator[tuple[HostedStack, WorkerCalls]]:
    stack = HostedStack(patient_history_s=3600)
    calls = WorkerCalls()
    stack.worker = worker_on_recorded_clients(stack, calls)
    try:
        yield stack, calls
    finally:
        stack.stop()


def runs_of(stack: HostedStack, calls: WorkerCalls, minutes: int) -> list[tuple[str, list[str]]]:
    """(outcome, the worker's calls) of each run of these minutes; a minute without a run calls nothing."""
    found: list[tuple[str, list[str]]] = []
    for _ in range(minutes):
        start = len(calls.calls)
        outcomes = [o.status for batch in stack.run_minute().batches for o in batch.outcomes]
        assert len(outcomes) <= 1
        if outcomes:
            found.append((outcomes[0], calls.since(start)))
        else:
            assert calls.since(start) == []
    return found


def marker(stack: HostedStack, email: str) -> frozenset[tuple[str, str]]:
    return DynamoDBStateStore(stack.table, stack.ddb, stack.clock).load(account_key(email)).incidents_open


@pytest.mark.slow
def test_a_hosted_account_never_reads_its_incidents_in_the_steady_state_for_2_hours(
    hosted: tuple[HostedStack, WorkerCalls],
) -> None:
    stack, calls = hosted
    stack.add_person(interval=5)
    first, *steady = runs_of(stack, calls, 135)
    # The container's first run of the account, 9 calls: the claim, its credentials, its state, its login
    # (lock, sealed ticket, patient), the upload record and its incidents once.
    assert first[0] == "ran" and first[1].count(INCIDENTS) == 1 and len(first[1]) == 9, first
    assert len(steady) >= 26 and all(status == "ran" for status, _ in steady)
    for _status, made in steady:
        assert INCIDENTS not in made and MARKER not in made, made
        # every steady run, the hourly ones included: the claim, the state and the upload record; the
        # credentials stay decrypted while their ciphertext is unchanged (no hourly KMS Decrypt)
        assert made == [CLAIM, LOAD, RECORD], made


@pytest.mark.slow
def test_a_new_worker_container_learns_of_an_open_incident_from_the_marker_and_closes_it(
    hosted: tuple[HostedStack, WorkerCalls],
) -> None:
    """The incidents of an account whose password was changed in the app: opened by one container; the
    account is replaced with the new password, and a warm, quiet container closes it from the marker."""
    stack, calls = hosted
    person = stack.add_person(interval=5)
    quiet = stack.worker
    runs_of(stack, calls, 10)  # two runs: it has read the incidents (none) and is quiet
    stack.llu.set_password(person.email, "changed in the app")
    stack.llu.revoke_tokens()
    stack.worker = stack.new_worker()  # another container takes the account's next run
    (failed, *_rest) = runs_of(stack, calls, 5)
    assert failed[0] == "failed"
    assert marker(stack, person.email) == {("bad_credentials", "")}

    stack.add_account(
        {
            "LINK_UP_USERNAME": person.email,
            "LINK_UP_PASSWORD": "changed in the app",
            "NIGHTSCOUT_URL": person.site_url,
            "NIGHTSCOUT_API_TOKEN": person.site.admin_token(),
            "LINK_UP_VERSION": "4.16.0",
            "SYNC_INTERVAL_MINUTES": 5,
        },
        replace=True,
    )
    stack.worker = quiet  # the quiet container again
    (closing, *later) = runs_of(stack, calls, 15)
    assert closing[0] == "ran" and closing[1].count(INCIDENTS) == 1 and MARKER in closing[1], closing
    assert marker(stack, person.email) == frozenset()
    announced = sorted(person.site.announcements(), key=lambda d: d["created_at"])
    assert len(announced) == 2 and "solved" in announced[1]["notes"], announced
    for status, made in later:  # the marker is clear: steady again
        assert status == "ran" and INCIDENTS not in made and len(made) <= 3, made
