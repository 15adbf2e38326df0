"""The hosted worker (linkup_sync.hosted.worker) on moto (DynamoDB, KMS) with a fake run in place of
run_once: which messages run, which are dropped, which SQS delivers again, and what each run is given.

run_once itself (LibreLink Up and Nightscout over HTTP) is the personal stack's code path, tested there
and, hosted, end to end in the integration tier. One test here runs the real run_once where it needs no
network: credentials that cannot be decrypted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from linkup_sync.errors import ConfigError, LinkUpBadCredentials, LinkupSyncError
from linkup_sync.hosted import worker as worker_module
from linkup_sync.hosted.accounts import check_account, seal_account
from linkup_sync.hosted.registry import Account, account_id_for, incidents_partition
from linkup_sync.hosted.settings import STACK_SETTING_KEYS
from linkup_sync.hosted.worker import BatchResult, Outcome, Worker
from linkup_sync.incidents.known import KnownIncidents
from linkup_sync.report import RunReport
from linkup_sync.runtime import Dependencies
from linkup_sync.state.incidents import DynamoDBIncidentStore
from tests.support.moto_hosted import NOW, HostedAws, hosted_aws

MINUTE = int(NOW // 60)
STACK_ENV = {
    "STATE_TABLE_NAME": "linkup-sync-state",
    "CREDENTIALS_KEY_ARN": "set by the fixture",
    "STALE_AFTER_MINUTES": "45",
    "LINK_UP_AUTO_ACCEPT_TERMS": "true",
    "LINK_UP_REGION": "US",  # not a stack setting: the stack's environment does not choose a region
}

Behaviour = Callable[[Dependencies], RunReport]


class FakeRuns:
    """Stands in for run_once: records who ran with what, and behaves per account as told."""

    def __init__(self) -> None:
        self.deps: dict[str, list[Dependencies]] = {}
        self.behaviour: dict[str, Behaviour] = {}
        self._lock = threading.Lock()  # the worker runs a batch's accounts in threads

    def __call__(self, deps: Dependencies) -> RunReport:
        creds = deps.credentials.get()  # the account's own credentials, decrypted by the vault
        account_id = account_id_for(creds.username)
        with self._lock:
            self.deps.setdefault(account_id, []).append(deps)
        behave = self.behaviour.get(account_id)
        return behave(deps) if behave else RunReport()

    def count(self, account_id: str) -> int:
        return len(self.deps.get(account_id, []))


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostedAws]:
    with hosted_aws(monkeypatch) as found:
        yield found


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> FakeRuns:
    fake = FakeRuns()
    monkeypatch.setattr(worker_module, "run_once", fake)
    return fake


def make_worker(aws: HostedAws, **kwargs: Any) -> Worker:
    env = {**STACK_ENV, "STATE_TABLE_NAME": aws.table, "CREDENTIALS_KEY_ARN": aws.key_arn}
    return Worker(registry=aws.registry, vault=aws.vault, store=aws.store, stack_env=env, clock=aws.clock, **kwargs)


def add(aws: HostedAws, number: int, *, interval: int = 5, **settings: Any) -> Account:
    raw = {
        "LINK_UP_USERNAME": f"follower{number}@example.invalid",
        "LINK_UP_PASSWORD": f"password {number}",
        "NIGHTSCOUT_URL": f"https://site{number}.example.org",
        "NIGHTSCOUT_API_TOKEN": f"token-{number:04d}-0123456789",
        "SYNC_INTERVAL_MINUTES": interval,
        **settings,
    }
    return aws.registry.put(seal_account(check_account(raw), aws.vault))


def message(account: Account | str, due: int = MINUTE, message_id: str | None = None, **body: Any) -> dict[str, Any]:
    account_id = account if isinstance(account, str) else account.id
    interval = 5 if isinstance(account, str) else account.interval
    text = json.dumps({"account": account_id, "due": due, "interval": interval, **body})
    return {"messageId": message_id or f"msg-{account_id}-{due}", "body": text}


def statuses(result: BatchResult) -> list[str]:
    return [o.status for o in result.outcomes]


def last_due(aws: HostedAws, account: Account) -> int | None:
    found = aws.registry.get(account.id)
    assert found is not None
    return found.last_due


# --- which messages run ---------------------------------------------------------------------------


def test_a_due_message_runs_the_account(aws: HostedAws, runs: FakeRuns) -> None:
    account = add(aws, 1)
    result = make_worker(aws).handle([message(account)])
    assert statuses(result) == ["ran"] and result.retry == [] and runs.count(account.id) == 1
    assert result.response() == {"batchItemFailures": []}
    assert last_due(aws, account) == MINUTE
    outcome = result.outcomes[0]
    assert outcome.account == account.id and outcome.counted and not outcome.failing


def test_an_empty_batch(aws: HostedAws, runs: FakeRuns) -> None:
    result = make_worker(aws).handle([])
    assert result.response() == {"batchItemFailures": []} and result.outcomes == []


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[1, 2]",
        "null",
        '"account"',
        '{"due": 1}',
        '{"account": "a1a1a1a1a1a1"}',
        '{"account": "a1a1a1a1a1a1", "due": "soon"}',
        '{"account": "a1a1a1a1a1a1", "due": 1, "interval": "often"}',
    ],
)
def test_a_malformed_message_is_dropped_not_retried(aws: HostedAws, runs: FakeRuns, body: str) -> None:
    result = make_worker(aws).handle([{"messageId": "m1", "body": body}])
    assert statuses(result) == ["malformed"] and result.retry == [] and runs.deps == {}


def test_a_message_without_a_body_is_malformed(aws: HostedAws, runs: FakeRuns) -> None:
    assert statuses(make_worker(aws).handle([{"messageId": "m1"}])) == ["malformed"]


def test_a_late_message_is_dropped_without_a_claim(aws: HostedAws, runs: FakeRuns) -> None:
    """More than an interval (and the minute of grace) late: the next dispatch of it is delivered already."""
    account = add(aws, 1, interval=5)
    aws.clock.tick(6 * 60)
    result = make_worker(aws).handle([message(account)])
    assert statuses(result) == ["late"] and result.retry == [] and runs.deps == {}
    assert last_due(aws, account) is None
    assert not result.outcomes[0].counted


@pytest.mark.parametrize("interval", [1, 5])
def test_a_message_delivered_in_the_next_minute_still_runs(aws: HostedAws, runs: FakeRuns, interval: int) -> None:
    """The dispatcher delays messages by up to 59 s after it starts, a little after the minute began: the
    last ones of a crowded minute arrive in the next minute, every minute, and must still run."""
    account = add(aws, 1, interval=interval)
    aws.clock.tick(60 + 1.5)
    result = make_worker(aws).handle([message(account)])
    assert statuses(result) == ["ran"] and runs.count(account.id) == 1


def test_a_second_delivery_does_nothing(aws: HostedAws, runs: FakeRuns) -> None:
    account = add(aws, 1)
    worker = make_worker(aws)
    assert statuses(worker.handle([message(account)])) == ["ran"]
    again = worker.handle([message(account)])
    assert statuses(again) == ["duplicate"] and again.retry == [] and runs.count(account.id) == 1


def test_two_deliveries_in_one_batch_run_once(aws: HostedAws, runs: FakeRuns) -> None:
    # one at a time: moto's conditional writes are not atomic across threads, DynamoDB's are
    account = add(aws, 1)
    result = make_worker(aws, max_parallel=1).handle(
        [message(account, message_id="a"), message(account, message_id="b")]
    )
    assert sorted(statuses(result)) == ["duplicate", "ran"] and runs.count(account.id) == 1


def test_a_message_older_than_the_last_run_does_nothing(aws: HostedAws, runs: FakeRuns) -> None:
    account = add(aws, 1, interval=1)
    aws.clock.tick(60)
    worker = make_worker(aws)
    assert statuses(worker.handle([message(account, due=MINUTE + 1)])) == ["ran"]
    assert statuses(worker.handle([message(account, due=MINUTE)])) == ["duplicate"]


def test_a_removed_account_does_nothing(aws: HostedAws, runs: FakeRuns) -> None:
    account = add(aws, 1)
    aws.registry.remove(account)
    result = make_worker(aws).handle([message(account)])
    assert statuses(result) == ["duplicate"] and result.retry == [] and runs.deps == {}


# --- failures --------------------------------------------------------------------------------------


def test_our_own_failure_before_the_run_is_retried_and_the_claim_released(
    aws: HostedAws, runs: FakeRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = add(aws, 1)
    worker = make_worker(aws)

    def broken(_: Account) -> Any:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(worker, "settings_for", broken)
    result = worker.handle([message(account, message_id="m-1")])
    assert statuses(result) == ["error"] and result.outcomes[0].reason == "RuntimeError"
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert last_due(aws, account) is None and runs.deps == {}
    monkeypatch.undo()
    monkeypatch.setattr(worker_module, "run_once", runs)
    assert statuses(worker.handle([message(account, message_id="m-1")])) == ["ran"]  # SQS's redelivery


def test_a_released_claim_gets_back_the_minute_run_before(
    aws: HostedAws, runs: FakeRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = add(aws, 1)
    worker = make_worker(aws)
    assert statuses(worker.handle([message(account, due=MINUTE - 5)])) == ["ran"]

    def broken(_: Account) -> Any:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(worker, "settings_for", broken)
    assert statuses(worker.handle([message(account)])) == ["error"]
    assert last_due(aws, account) == MINUTE - 5


def test_dynamodb_failing_at_the_claim_is_retried(
    aws: HostedAws, runs: FakeRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    from linkup_sync.errors import StateUnavailable

    account = add(aws, 1)
    worker = make_worker(aws)

    def throttled(*_: Any) -> Any:
        raise StateUnavailable("ProvisionedThroughputExceededException")

    monkeypatch.setattr(aws.registry, "claim", throttled)
    result = worker.handle([message(account, message_id="m-1")])
    assert statuses(result) == ["error"] and result.retry == ["m-1"] and runs.deps == {}


def test_a_failed_run_is_not_retried(aws: HostedAws, runs: FakeRuns) -> None:
    """The next interval is the retry: SQS delivering it again would ask LibreLink Up again within minutes."""
    account = add(aws, 1)

    def bad_password(_: Dependencies) -> RunReport:
        raise LinkUpBadCredentials()

    runs.behaviour[account.id] = bad_password
    result = make_worker(aws).handle([message(account)])
    outcome = result.outcomes[0]
    assert (outcome.status, outcome.reason, result.retry) == ("failed", "bad_credentials", [])
    assert outcome.counted and outcome.failing
    assert last_due(aws, account) == MINUTE  # claimed: a second delivery does not log in again


def test_a_skipped_run_counts_as_failing(aws: HostedAws, runs: FakeRuns) -> None:
    account = add(aws, 1)
    runs.behaviour[account.id] = lambda deps: RunReport(skipped="bad_credentials")
    outcome = make_worker(aws).handle([message(account)]).outcomes[0]
    assert (outcome.status, outcome.reason, outcome.counted, outcome.failing) == (
        "skipped",
        "bad_credentials",
        True,
        True,
    )


def test_the_accounts_of_a_batch_do_not_affect_each_other(aws: HostedAws, runs: FakeRuns) -> None:
    slow, ok, bad, crashing = (add(aws, n) for n in range(1, 5))
    gate = threading.Event()
    released: list[bool] = []

    def bad_password(_: Dependencies) -> RunReport:
        raise LinkUpBadCredentials()

    def crash(_: Dependencies) -> RunReport:
        raise ZeroDivisionError

    def wait_for_the_others(_: Dependencies) -> RunReport:
        # the test opens the gate only once the others have run: False here means they waited for this one
        released.append(gate.wait(timeout=30))
        return RunReport()

    runs.behaviour.update({bad.id: bad_password, crashing.id: crash, slow.id: wait_for_the_others})
    worker = make_worker(aws)
    records = [message(a, message_id=a.id) for a in (slow, ok, bad, crashing)]
    records.insert(2, {"messageId": "junk", "body": "{}"})
    done: list[BatchResult] = []
    thread = threading.Thread(target=lambda: done.append(worker.handle(records)))
    thread.start()
    for account in (ok, bad, crashing):
        while runs.count(account.id) == 0 and thread.is_alive():
            thread.join(0.01)
    gate.set()
    thread.join(60)
    assert released == [True]
    (result,) = done
    assert [(o.account, o.status) for o in result.outcomes] == [  # in the order of the records
        (slow.id, "ran"),
        (ok.id, "ran"),
        ("", "malformed"),
        (bad.id, "failed"),
        (crashing.id, "failed"),  # a bug inside the run: counted as failed, not delivered again
    ]
    assert result.outcomes[-1].reason == "internal"
    assert result.retry == []
    assert all(runs.count(a.id) == 1 for a in (slow, ok, bad, crashing))


# --- what each run gets ------------------------------------------------------------------------------


def test_settings_combine_the_stack_and_the_account(aws: HostedAws, runs: FakeRuns) -> None:
    eu2 = add(aws, 1, LINK_UP_REGION="EU2", LINK_UP_VERSION="4.17.0")
    plain = add(aws, 2)
    make_worker(aws).handle([message(eu2), message(plain)])
    (mine,), (theirs,) = runs.deps[eu2.id], runs.deps[plain.id]
    assert (mine.settings.region, mine.settings.version, mine.settings.version_auto) == ("eu2", "4.17.0", False)
    assert (theirs.settings.region, theirs.settings.version_auto) == ("eu", True)  # not the stack env's US
    for deps in (mine, theirs):
        assert deps.settings.stale_after_minutes == 45 and deps.settings.auto_accept_terms
        assert deps.settings.table_name == aws.table
        assert deps.store is aws.store and deps.alerts is None
    assert isinstance(mine.incidents, DynamoDBIncidentStore) and mine.incidents.pk == incidents_partition(eu2.id)
    assert isinstance(theirs.incidents, DynamoDBIncidentStore)
    assert theirs.incidents.pk == incidents_partition(plain.id)
    assert "accounts add --replace" in str(mine.secret_hint)


def test_an_account_cannot_set_what_is_the_stacks(aws: HostedAws, runs: FakeRuns) -> None:
    """The registry item may come from elsewhere one day (a sign-up page): only its own few keys count."""
    account = add(aws, 1)
    foreign = {
        "STATE_TABLE_NAME": "someone-elses-table",
        "LINK_UP_API_URL": "https://collector.example/{region}",
        "STALE_AFTER_MINUTES": "999",
        "NIGHTSCOUT_ANNOUNCE": "false",
        "LINK_UP_REGION": "EU2",
    }
    aws.registry.put(replace(account, settings=foreign), replace_existing=True)
    result = make_worker(aws).handle([message(account)])
    assert statuses(result) == ["ran"]
    settings = runs.deps[account.id][0].settings
    assert settings.table_name == aws.table and settings.api_url_template.startswith("https://api-{region}.")
    assert settings.stale_after_minutes == 45 and settings.announce and settings.region == "eu2"
    assert set(STACK_SETTING_KEYS) >= {"STATE_TABLE_NAME", "LINK_UP_API_URL", "STALE_AFTER_MINUTES"}


def test_an_account_with_a_broken_setting_fails_without_a_retry(aws: HostedAws, runs: FakeRuns) -> None:
    account = add(aws, 1)
    aws.registry.put(replace(account, settings={"LINK_UP_REGION": "Atlantis"}), replace_existing=True)
    result = make_worker(aws).handle([message(account)])
    assert (result.outcomes[0].status, result.outcomes[0].reason, result.retry) == ("failed", "config", [])
    assert runs.deps == {}


def test_settings_are_made_once_per_combination(aws: HostedAws) -> None:
    worker = make_worker(aws)
    one, two, eu2 = add(aws, 1), add(aws, 2), add(aws, 3, LINK_UP_REGION="EU2")
    assert worker.settings_for(one) is worker.settings_for(two)
    assert worker.settings_for(eu2) is not worker.settings_for(one)


def test_a_container_remembers_that_no_incident_is_open(aws: HostedAws, runs: FakeRuns) -> None:
    account = add(aws, 1)

    def read_none_open(deps: Dependencies) -> RunReport:
        deps.known_incidents = KnownIncidents()
        return RunReport()

    runs.behaviour[account.id] = read_none_open
    worker = make_worker(aws)
    worker.handle([message(account)])
    worker.handle([message(account, due=MINUTE + 5)])
    first, second = runs.deps[account.id]
    assert first is not second
    assert second.known_incidents == KnownIncidents()
    # a container's first run of an account has not read its incidents: it reads them
    assert make_worker(aws).dependencies(account).known_incidents is None


def test_credentials_that_cannot_be_decrypted_fail_the_run_and_open_an_incident(aws: HostedAws) -> None:
    """The real run_once: the vault refuses another account's ciphertext before anything is contacted."""
    mine, other = add(aws, 1), add(aws, 2)
    aws.registry.put(replace(mine, ciphertext=other.ciphertext), replace_existing=True)
    result = make_worker(aws).handle([message(mine, message_id="m-1")])
    outcome = result.outcomes[0]
    assert (outcome.status, outcome.reason, result.retry) == ("failed", "secret", [])
    incidents = aws.registry.items(incidents_partition(mine.id))
    assert incidents, "the person is told (on their Nightscout, once it can be reached)"
    assert aws.registry.items(incidents_partition(other.id)) == []
    assert "password 2" not in json.dumps(incidents, default=str)


# --- the worker's own configuration ---------------------------------------------------------------------


def test_from_env_names_every_missing_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        Worker.from_env({"STATE_TABLE_NAME": " "})
    assert [p.split(" ")[0] for p in caught.value.problems] == ["STATE_TABLE_NAME", "CREDENTIALS_KEY_ARN"]
    assert "hosted stack" in caught.value.message


def test_from_env_keeps_only_the_stack_settings(aws: HostedAws) -> None:
    worker = Worker.from_env({**STACK_ENV, "STATE_TABLE_NAME": aws.table, "CREDENTIALS_KEY_ARN": aws.key_arn})
    assert set(worker.stack_env) <= set(STACK_SETTING_KEYS) and "LINK_UP_REGION" not in worker.stack_env
    assert worker.registry.table_name == aws.table and worker.vault.key_id == aws.key_arn


def test_outcome_flags_and_the_batch_response() -> None:
    flags = {s: (Outcome("a", s).counted, Outcome("a", s).failing) for s in ("ran", "skipped", "failed")}
    assert flags == {"ran": (True, False), "skipped": (True, True), "failed": (True, True)}
    for status in ("duplicate", "late", "malformed", "error"):
        assert not Outcome("a", status).counted and not Outcome("a", status).failing
    assert BatchResult(retry=["x", "y"]).response() == {
        "batchItemFailures": [{"itemIdentifier": "x"}, {"itemIdentifier": "y"}]
    }
    assert issubclass(LinkUpBadCredentials, LinkupSyncError)


def test_no_time_left_after_the_claim_releases_it_rather_than_start_a_run(
    aws: HostedAws, runs: FakeRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run started with no time left fails on its own budget, which the run takes for LibreLink Up timing
    out (a back-off of minutes for nothing LibreLink Up did): the claim is released, SQS delivers again."""
    account = add(aws, 1)
    worker = make_worker(aws)
    now = [1000.0]
    monkeypatch.setattr(worker_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    claim = aws.registry.claim

    def slow_claim(account_id: str, due: int) -> Account | None:
        now[0] += 30.0  # DynamoDB took the rest of the invocation
        return claim(account_id, due)

    monkeypatch.setattr(aws.registry, "claim", slow_claim)
    outcome = worker.run_account(account.id, MINUTE, 5, ends=now[0] + worker_module.AFTER_DEADLINE_S + 20.0)
    assert (outcome.status, outcome.reason) == ("error", "no_time")
    assert runs.deps == {} and last_due(aws, account) is None  # nothing ran, the claim was given back
