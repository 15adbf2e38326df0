from __future__ import annotations

from collections.abc import Iterator

import pytest
from tools.hosted_stack import HostedStack

from tests.integration.harness import Harness, moto_server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "LinkupSync")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "linkup-sync")
    return moto_endpoint


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in this process (mock_aws) with dummy credentials: no endpoint, nothing can reach AWS."""
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def stack(aws: None) -> Iterator[HostedStack]:
    """The hosted stack (tools/hosted_stack.py) inside mock_aws, patients with an hour of history."""
    hosted = HostedStack(patient_history_s=3600)
    try:
        yield hosted
    finally:
        hosted.stop()


@pytest.fixture
def harness(aws_env: str) -> Iterator[Harness]:
    from aws_lambda_powertools.metrics.provider import cold_start

    from linkup_sync.observability import metrics

    h = Harness(aws_env)
    cold_start.is_cold_start = True
    try:
        yield h
    finally:
        metrics().clear_metrics()
        h.stop()


class LogCapture:
    """Everything the bridge writes: its JSON log lines and the metrics (EMF) blobs, all on stdout."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def text(self) -> str:
        out = self.capsys.readouterr()
        return out.out + out.err


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> LogCapture:
    return LogCapture(capsys)
