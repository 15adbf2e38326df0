"""The hosted stack's Lambda handlers, functions/dispatch/app.py and functions/worker/app.py, imported
from their files (both modules are named app, like the personal stack's) and invoked on moto."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from tools.hosted_stack import sqs_on_clock
from tools.local_stack import load_function
from tools.run_handler import LocalContext

from linkup_sync.errors import ConfigError
from linkup_sync.hosted import worker as worker_module
from linkup_sync.hosted.accounts import check_account, seal_account
from linkup_sync.hosted.dispatch import Dispatcher, SqsQueue
from linkup_sync.hosted.registry import Account
from linkup_sync.hosted.worker import Worker
from linkup_sync.report import RunReport
from linkup_sync.runtime import Dependencies
from tests.support.moto_hosted import NOW, REGION, HostedAws, hosted_aws

MINUTE = int(NOW // 60)
SCHEDULED = "2027-01-15T08:03:00Z"
PASSWORD = "password of follower"


def load_handler(function: str) -> ModuleType:
    """A fresh copy of functions/<function>/app.py: its own module (and its own cached dispatcher or worker)."""
    module: ModuleType = load_function(function, f"hosted_{function}_app_{uuid.uuid4().hex}")
    return module


def emf_values(text: str) -> dict[str, list[float]]:
    """Metric name -> the values of every embedded-metric-format blob in the output."""
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        try:
            blob = json.loads(line)
        except ValueError:
            continue
        if not isinstance(blob, dict) or "_aws" not in blob:
            continue
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                found.setdefault(metric["Name"], []).extend(value if isinstance(value, list) else [value])
    return found


def log_lines(text: str, message: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        try:
            blob = json.loads(line)
        except ValueError:
            continue
        if isinstance(blob, dict) and blob.get("message") == message:
            lines.append(blob)
    return lines


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostedAws]:
    with hosted_aws(monkeypatch) as found:
        yield found


def add(aws: HostedAws, number: int, interval: int = 1) -> Account:
    raw = {
        "LINK_UP_USERNAME": f"follower{number}@example.invalid",
        "LINK_UP_PASSWORD": f"{PASSWORD} {number}",
        "NIGHTSCOUT_URL": f"https://site{number}.example.org",
        "NIGHTSCOUT_API_TOKEN": f"token-{number:04d}-0123456789",
        "SYNC_INTERVAL_MINUTES": interval,
    }
    return aws.registry.put(seal_account(check_account(raw), aws.vault))


# --- the dispatcher --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, ["STATE_TABLE_NAME", "SYNC_QUEUE_URL"]),
        ({"STATE_TABLE_NAME": "t", "SYNC_QUEUE_URL": " "}, ["SYNC_QUEUE_URL"]),
    ],
)
def test_the_dispatcher_names_each_missing_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], missing: list[str]
) -> None:
    for name in ("STATE_TABLE_NAME", "SYNC_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = load_handler("dispatch")
    with pytest.raises(ConfigError) as caught:
        app.handler({"scheduled_time": SCHEDULED}, LocalContext())
    assert [p.split(" ")[0] for p in caught.value.problems] == missing
    assert "hosted.yaml" in caught.value.message


def test_the_dispatcher_queues_the_minute_of_the_schedule(
    aws: HostedAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="SyncQueue")["QueueUrl"]
    monkeypatch.setenv("STATE_TABLE_NAME", aws.table)
    monkeypatch.setenv("SYNC_QUEUE_URL", url)
    accounts = {add(aws, n).id for n in range(3)}  # all due every minute
    app = load_handler("dispatch")
    with sqs_on_clock(aws.clock):  # the messages' delays pass on the test's clock
        result = app.handler({"scheduled_time": SCHEDULED}, LocalContext())
        aws.clock.tick(60)
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    minute = 30_000_003  # 08:03 UTC, not the minute of the clock (NOW is 08:00)
    assert result == {"minute": minute, "due": 3, "sent": 3, "unsent": 0}
    assert isinstance(app.DISPATCHER, Dispatcher) and isinstance(app.DISPATCHER.queue, SqsQueue)
    bodies = [json.loads(m["Body"]) for m in received]
    assert {b["account"] for b in bodies} == accounts and {b["due"] for b in bodies} == {minute}
    (line,) = log_lines(capsys.readouterr().out, "dispatch finished")
    assert line["summary"] == result


# --- the worker ------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # it fails before adding any
def test_the_worker_names_each_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STATE_TABLE_NAME", "CREDENTIALS_KEY_ARN"):
        monkeypatch.delenv(name, raising=False)
    app = load_handler("worker")
    with pytest.raises(ConfigError) as caught:
        app.handler({"Records": []}, LocalContext())
    assert [p.split(" ")[0] for p in caught.value.problems] == ["STATE_TABLE_NAME", "CREDENTIALS_KEY_ARN"]


def test_the_worker_returns_the_batch_response_and_the_two_metrics(
    aws: HostedAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran, skipped, crashing = (add(aws, n) for n in range(3))

    def fake_run(deps: Dependencies) -> RunReport:
        username = deps.credentials.get().username
        if username == "follower1@example.invalid":
            return RunReport(skipped="bad_credentials", needs_person=True)
        if username == "follower2@example.invalid":
            raise RuntimeError("a bug of ours")
        return RunReport()

    monkeypatch.setattr(worker_module, "run_once", fake_run)
    monkeypatch.setenv("STATE_TABLE_NAME", aws.table)
    monkeypatch.setenv("CREDENTIALS_KEY_ARN", aws.key_arn)
    app = load_handler("worker")
    # the worker the handler builds from the environment, but on the test's clock
    worker = Worker(
        registry=aws.registry,
        vault=aws.vault,
        store=aws.store,
        stack_env={"STATE_TABLE_NAME": aws.table},
        clock=aws.clock,
    )
    monkeypatch.setattr(app, "WORKER", worker)
    records = [
        {"messageId": f"m-{a.id}", "body": json.dumps({"account": a.id, "due": MINUTE, "interval": 1})}
        for a in (ran, skipped, crashing)
    ]
    records.append({"messageId": "m-junk", "body": "junk"})
    capsys.readouterr()
    result = app.handler({"Records": records}, LocalContext())
    # a bug inside a run may have uploaded already: not delivered again, the next interval retries
    assert result == {"batchItemFailures": []}
    out = capsys.readouterr().out
    metrics = emf_values(out)
    # runs that happened: ran + skipped + failed; failing: skipped + failed (the bug); junk dropped
    assert metrics["AccountRuns"] == [3] and metrics["AccountRunsFailed"] == [2]
    (line,) = log_lines(out, "batch finished")
    assert line["summary"] == {"messages": 4, "ran": 1, "skipped": 1, "failed": 1, "malformed": 1}
    assert PASSWORD not in out and "token-000" not in out


def test_an_empty_batch_reports_zero(
    aws: HostedAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STATE_TABLE_NAME", aws.table)
    monkeypatch.setenv("CREDENTIALS_KEY_ARN", aws.key_arn)
    app = load_handler("worker")
    capsys.readouterr()
    assert app.handler({"Records": []}, LocalContext()) == {"batchItemFailures": []}
    metrics = emf_values(capsys.readouterr().out)
    assert metrics["AccountRuns"] == [0] and metrics["AccountRunsFailed"] == [0]
