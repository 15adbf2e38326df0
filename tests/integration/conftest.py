from __future__ import annotations

from collections.abc import Iterator

import pytest

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
    """Every line the bridge logs (through Powertools' JSON formatter) plus what it prints (EMF)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        import io
        import logging

        from linkup_sync.observability import logger

        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(logger().registered_formatter)
        self.loggers = [logging.getLogger(logger().service), logging.getLogger("linkup_sync")]
        for lg in self.loggers:
            lg.addHandler(self.handler)
        self.capsys = capsys

    def text(self) -> str:
        out = self.capsys.readouterr()
        return self.stream.getvalue() + out.out + out.err

    def close(self) -> None:
        for lg in self.loggers:
            lg.removeHandler(self.handler)


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[LogCapture]:
    capture = LogCapture(capsys)
    try:
        yield capture
    finally:
        capture.close()
