"""The soak's short profile (about a simulated week of 5-minute runs with seeded faults), and the
DynamoDB failure it found. The long profile is `make soak` (tools/soak.py)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any

import pytest
from tools.local_stack import EMAIL, PASSWORD, LocalStack, aws_environment, moto_server
from tools.soak import RATES, FaultPlan, bump_rev, faulty_store, run_soak

from linkup_sync import errors

SHORT_DAYS = 7  # the 5-minute schedule: about 70 s of wall time on one core


@pytest.mark.slow
def test_a_simulated_week_of_faults_loses_nothing_duplicates_nothing_and_leaks_nothing() -> None:
    result = run_soak(SHORT_DAYS, seed=1)
    print(result.table())  # shown with -s or when the test fails
    assert result.problems() == []
    assert result.unexpected == [], "only the package's typed errors may reach the handler's caller"
    assert result.duplicates == 0 and result.missing == [] and result.ledger_problems == []
    assert result.login_problems == [] and result.logins - result.failed_logins <= 1 + result.revocations
    assert result.secret_leaks == [] and result.output_bytes > 1_000_000  # the scan saw real output
    assert result.state_problems == []
    # the faults really happened and really hurt: every kind, and failed or skipped runs for each family
    assert set(RATES) <= set(result.faults), sorted(set(RATES) - set(result.faults))
    for reason in (
        "nightscout_unreachable",
        "nightscout_unauthorized",
        "server_error",
        "rate_limited",
        "blocked",
        "malformed",
        "timeout",
        "maintenance",
        "state_unavailable",
        "crash_after_upload (injected)",
    ):
        assert result.failed[reason] >= 1, reason
    assert result.skipped["rate_limited"] + result.skipped["maintenance"] >= 1
    # what LibreLink Up offered arrived, and only readings at the edge of the first poll's 12 hours
    # (older than the first run's hour of grace) are not demanded
    assert result.in_nightscout >= result.offered_history
    assert result.excused <= 24
    assert result.max_gap_s <= 10 * 60


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def stack(moto_endpoint: str) -> Iterator[LocalStack]:
    with aws_environment(moto_endpoint), LocalStack(moto_endpoint, log_sink=io.StringIO()) as s:
        s.llu.add_patient(EMAIL)
        s.provision()
        yield s


class FailNextDynamoDBCall:
    """botocore 'before-call': the n-th DynamoDB call from now fails (as after botocore's own retries)."""

    def __init__(self, error: Exception, nth: int) -> None:
        self.error, self.countdown, self.fired = error, nth, ""

    def __call__(self, model: Any = None, **_: Any) -> None:
        if model is None or model.service_model.service_name != "dynamodb" or self.countdown <= 0:
            return
        self.countdown -= 1
        if self.countdown == 0:
            self.fired = model.name
            raise self.error


def throttled(operation: str = "Query") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, operation)


def unreachable() -> Exception:
    from botocore.exceptions import EndpointConnectionError

    return EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")


# nth DynamoDB call of a steady-state run: 1 = the Query that loads the state, 2 = the UpdateItem after
# Nightscout accepted the readings
@pytest.mark.parametrize(
    ("make_error", "nth", "operation"),
    [
        (throttled, 1, "Query"),
        (throttled, 2, "UpdateItem"),
        (unreachable, 1, "Query"),
    ],
)
def test_a_dynamodb_failure_is_a_typed_error_and_the_next_run_recovers(
    stack: LocalStack, make_error: Any, nth: int, operation: str
) -> None:
    stack.run()
    stack.tick(300)
    before = stack.stored_ledger()
    hook = FailNextDynamoDBCall(make_error(), nth)
    stack.aws_calls = hook  # type: ignore[assignment]  # registered on the new container's clients
    stack.new_container()
    with pytest.raises(errors.LinkupSyncError) as err:
        stack.run()
    assert hook.fired == operation
    assert err.value.reason == "state_unavailable"
    assert "DynamoDB" in str(err.value) and "next run" in str(err.value)
    assert stack.stored_ledger() == before  # the state did not move
    stack.tick(300)
    result = stack.run()
    assert result["uploaded"] >= 1 and stack.ns.duplicates() == []
    assert set(stack.stored_ledger()) <= {int(e["date"]) // 1000 for e in stack.ns.sgv_entries()}
    assert stack.llu.logins == 1
    text = f"{err.value}{err.value!r}"
    for secret in (PASSWORD, stack.ns_token, hashlib.sha1(stack.ns_token.encode()).hexdigest()):  # noqa: S324
        assert secret not in text


@pytest.fixture
def account_conflict(stack: LocalStack) -> Iterator[FaultPlan]:
    """Arm `plan.conflict_account`: the next account write meets a concurrent write (the item's rev moved)."""
    import boto3

    client = boto3.client("dynamodb", endpoint_url=stack.moto_endpoint)
    plan = FaultPlan()
    with faulty_store(plan, lambda key, sk: bump_rev(client, stack.env["STATE_TABLE_NAME"], key, sk)):
        yield plan


def test_a_new_ticket_survives_a_concurrent_write_to_the_account(
    stack: LocalStack, account_conflict: FaultPlan
) -> None:
    stack.run()
    stack.llu.revoke_tokens()
    stack.tick(300)
    account_conflict.conflict_account = True  # another run writes the account while this one logs in
    assert stack.run()["logins"] == 1
    assert account_conflict.fired["ddb_conflict_account"] == 1
    assert stack.llu.logins == 2
    for _ in range(3):
        stack.tick(300)
        stack.new_container()
        assert stack.run()["logins"] == 0
    assert stack.llu.logins == 2  # one login for one revocation


def test_the_bad_password_breaker_survives_a_concurrent_write_to_the_account(
    stack: LocalStack, account_conflict: FaultPlan
) -> None:
    stack.run()
    stack.tick(300)
    stack.put_secret(password="an old password")  # changed in the app, not yet in the secret
    stack.llu.revoke_tokens()
    stack.new_container()
    with pytest.raises(errors.LinkUpBadCredentials):
        stack.run()  # the 401 -> one login -> bad credentials, breaker stored
    assert stack.llu.logins == 2
    stack.put_secret(password="still an old password")  # a new secret version: one new attempt
    stack.new_container()
    stack.tick(300)
    account_conflict.conflict_account = True
    with pytest.raises(errors.LinkUpBadCredentials):
        stack.run()
    assert account_conflict.fired["ddb_conflict_account"] == 1
    for _ in range(3):
        stack.tick(300)
        stack.new_container()
        assert stack.run()["skipped"] == "bad_credentials"
    assert stack.llu.logins == 3  # one attempt per version of the secret, whoever else writes the account
