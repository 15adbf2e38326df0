"""Issue 21: every log line of a hosted run carries the account's id, also while the accounts of a batch run
side by side in threads (linkup_sync.log_context), in the JSON lines Powertools writes."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from linkup_sync.hosted import worker as worker_module
from linkup_sync.hosted.accounts import check_account, seal_account
from linkup_sync.hosted.registry import Account, account_id_for
from linkup_sync.hosted.worker import Worker
from linkup_sync.log_context import account_logs, current_account, install
from linkup_sync.report import RunReport
from linkup_sync.runtime import Dependencies
from tests.fakes import package_log
from tests.support.moto_hosted import NOW, HostedAws, hosted_aws

MINUTE = int(NOW // 60)


class Lines(logging.Handler):
    """The package's log lines as Powertools writes them in Lambda: one JSON object each."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(LambdaPowertoolsFormatter())
        self.lines: list[dict[str, object]] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(self.format(record))
        with self._lock:
            self.lines.append(line)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostedAws]:
    with hosted_aws(monkeypatch) as found:
        yield found


@pytest.fixture
def lines() -> Iterator[Lines]:
    with package_log(Lines()) as handler:
        yield handler


def add(aws: HostedAws, number: int) -> Account:
    raw = {
        "LINK_UP_USERNAME": f"follower{number}@example.invalid",
        "LINK_UP_PASSWORD": f"password {number}",
        "NIGHTSCOUT_URL": f"https://site{number}.example.org",
        "NIGHTSCOUT_API_TOKEN": f"token-{number:04d}-0123456789",
        "SYNC_INTERVAL_MINUTES": 5,
    }
    return aws.registry.put(seal_account(check_account(raw), aws.vault))


def message(account: Account) -> dict[str, str]:
    body = json.dumps({"account": account.id, "due": MINUTE, "interval": account.interval})
    return {"messageId": f"msg-{account.id}", "body": body}


def test_two_accounts_in_parallel_log_each_with_its_own_id(
    aws: HostedAws, lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    together = threading.Barrier(2, timeout=30)  # both runs are inside at once, or the barrier breaks

    def run_once(deps: Dependencies) -> RunReport:
        me = account_id_for(deps.credentials.get().username)
        log = logging.getLogger("linkup_sync")
        log.info("run started for %s", me)
        together.wait()
        log.warning("a warning of the run of %s", me)
        together.wait()
        log.info("run ends for %s", me)
        return RunReport()

    monkeypatch.setattr(worker_module, "run_once", run_once)
    first, second = add(aws, 1), add(aws, 2)
    worker = Worker(
        registry=aws.registry,
        vault=aws.vault,
        store=aws.store,
        stack_env={"STATE_TABLE_NAME": aws.table},
        clock=aws.clock,
    )
    result = worker.handle([message(first), message(second)])
    assert [o.status for o in result.outcomes] == ["ran", "ran"]

    runs = [line for line in lines.lines if "run" in str(line["message"]) and " for " in str(line["message"])]
    runs += [line for line in lines.lines if str(line["message"]).startswith("a warning of the run")]
    assert len(runs) == 6
    for line in runs:
        assert str(line["message"]).endswith(str(line["account"])), line
    finished = [line for line in lines.lines if line["message"] == "account run finished"]
    assert sorted(str(line["account"]) for line in finished) == sorted([first.id, second.id])
    logging.getLogger("linkup_sync").warning("after the batch")
    assert "account" not in lines.lines[-1]  # the threads' accounts stayed in their runs
    assert current_account() is None


def test_the_context_nests_and_restores() -> None:
    with account_logs("a1a1a1a1a1a1"):
        with account_logs("b2b2b2b2b2b2"):
            assert current_account() == "b2b2b2b2b2b2"
        assert current_account() == "a1a1a1a1a1a1"
    assert current_account() is None


def test_a_line_that_names_its_account_keeps_it(lines: Lines) -> None:
    install()
    with account_logs("a1a1a1a1a1a1"):
        logging.getLogger("linkup_sync").warning("other", extra={"account": "c3c3c3c3c3c3"})
    assert lines.lines[-1]["account"] == "c3c3c3c3c3c3"
