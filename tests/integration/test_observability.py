"""What the alarms see: the metrics (embedded metric format) and the log lines of healthy and failing runs.

The metric names and dimension sets are the contract of tests/template/test_alarms.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tools.simulators.nightscout import NightscoutStandIn

from linkup_sync import errors
from tests.integration.conftest import LogCapture
from tests.integration.harness import EMAIL, PASSWORD, Harness
from tests.support.librelinkup import fixture_bytes
from tests.template.test_alarms import METRIC_CONTRACT

Metric = tuple[str, tuple[str, ...], float, dict[str, Any]]


def emf(text: str) -> list[Metric]:
    """Every metric value in the EMF blobs of the output: (name, dimension names, value, dimensions)."""
    found: list[Metric] = []
    for line in text.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "LinkupSync"
            for dims in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    values = blob[metric["Name"]]
                    for value in values if isinstance(values, list) else [values]:
                        found.append((metric["Name"], tuple(dims), float(value), {d: blob[d] for d in dims}))
    return found


def values(metrics: list[Metric], name: str, dims: tuple[str, ...] = ("service",)) -> list[float]:
    return [v for n, d, v, _ in metrics if n == name and d == dims]


def reasons(metrics: list[Metric], name: str) -> set[str]:
    return {labels["reason"] for n, d, _, labels in metrics if n == name and d == ("service", "reason")}


def summary_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in text.splitlines() if '"message":"sync run finished"' in ln]


def test_healthy_run_metrics_and_summary_line(harness: Harness, logs: LogCapture) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()
    harness.run()
    harness.tick(300)
    harness.run()
    text = logs.text()
    metrics = emf(text)
    # One custom metric only (each costs 0.30 USD a month): the one the stale-data alarm watches.
    assert {name for name, *_ in metrics} == {"LeastReadingsUploaded"}
    least = values(metrics, "LeastReadingsUploaded")
    assert least[0] > 100 and least[1] >= 1
    assert '"ColdStart"' not in text
    for name, dims, _, labels in metrics:
        if name in METRIC_CONTRACT:
            assert dims in METRIC_CONTRACT[name], (name, dims)
            assert labels["service"] == "linkup-sync"
    lines = summary_lines(text)
    assert len(lines) == 2
    first = lines[0]
    assert first["correlation_id"].startswith("exec-") and first["cold_start"] is True
    assert first["service"] == "linkup-sync" and first["level"] == "INFO"
    summary = first["summary"]
    for key in (
        "patient",
        "readings_seen",
        "uploaded",
        "gap_filled",
        "newest_reading_age_s",
        "linkup_requests",
        "nightscout_requests",
        "logins",
    ):
        assert key in summary
    assert len(summary["patient"]) == 8 and "Pat" not in json.dumps(summary)  # a short hash, never a name
    # what the metrics used to carry is in the summary line, for the saved Logs Insights queries
    assert summary["uploaded"] == least[0] and summary["gap_filled"] > 100 and summary["logins"] == 1
    assert lines[1]["summary"]["logins"] == 0 and 0 <= lines[1]["summary"]["newest_reading_age_s"] < 120


Scenario = Callable[[Harness], None]


def bad_password(h: Harness) -> None:
    h.put_secret(password="wrong")
    h.llu.revoke_tokens()
    h.new_container()


def terms(h: Harness) -> None:
    h.llu.force_steps(EMAIL, ["tou"])
    h.llu.revoke_tokens()


def version(h: Harness) -> None:
    h.llu.set_min_version("4.99.0")


def locked(h: Harness) -> None:
    h.llu.revoke_tokens()
    h.llu.fail_next(1, status=200, body=fixture_bytes("login-locked.json"), path="/llu/auth/login")


def rate_limited(h: Harness) -> None:
    h.llu.rate_limit_html(1)


def ns_unauthorized(h: Harness) -> None:
    h.put_secret(ns_token="not-a-valid-token")
    h.new_container()


def ns_unreachable(h: Harness) -> None:
    h.ns.set_unreachable(True)


def secret_incomplete(h: Harness) -> None:
    import boto3

    boto3.client("secretsmanager", endpoint_url=h.moto_endpoint).put_secret_value(
        SecretId=h.secret_arn, SecretString=json.dumps({"LINK_UP_USERNAME": EMAIL, "LINK_UP_PASSWORD": PASSWORD})
    )
    h.new_container()


# scenario -> (error of the failing run, reason, needs the person, what the following run reports)
CASES: dict[str, tuple[Scenario, type[errors.LinkupSyncError], str, bool, str | None]] = {
    "bad_credentials": (bad_password, errors.LinkUpBadCredentials, "bad_credentials", True, "ActionRequired"),
    "terms": (terms, errors.LinkUpActionRequired, "action_required", True, "ActionRequired"),
    "version": (version, errors.LinkUpVersionRejected, "version", True, "ActionRequired"),
    "locked": (locked, errors.LinkUpLocked, "locked", False, "RunSkipped"),
    "rate_limited": (rate_limited, errors.LinkUpRateLimited, "rate_limited", False, "RunSkipped"),
    "nightscout_unauthorized": (ns_unauthorized, errors.NightscoutUnauthorized, "nightscout_unauthorized", True, None),
    "nightscout_unreachable": (ns_unreachable, errors.NightscoutUnreachable, "nightscout_unreachable", False, None),
    "secret": (secret_incomplete, errors.SecretError, "secret", True, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_failure_reason_reaches_the_metrics(harness: Harness, logs: LogCapture, case: str) -> None:
    scenario, error, reason, needs_person, afterwards = CASES[case]
    harness.llu.add_patient(EMAIL)
    harness.provision()
    harness.run()
    logs.text()  # drop the healthy run's output
    harness.tick(300)
    scenario(harness)
    with pytest.raises(error):
        harness.run()
    text = logs.text()
    metrics = emf(text)
    assert values(metrics, "LeastReadingsUploaded") == [0.0]  # the stale-data alarm sees the failed run
    (line,) = summary_lines(text)  # a failed run has its summary line too: the failures query counts it
    assert line["summary"]["failed"] == reason and line["summary"]["needs_person"] is needs_person
    if case in ("bad_credentials", "terms", "locked"):
        assert line["summary"]["logins"] == 1
    if afterwards:
        # the next run is held back by the stored breaker: it reports, it does not fail
        harness.tick(60)
        result = harness.run()
        assert result["linkup_requests"] == 0
        (line,) = summary_lines(logs.text())
        assert "failed" not in line["summary"] and line["summary"]["skipped"] == result["skipped"]
        assert line["summary"]["needs_person"] is (afterwards == "ActionRequired")


def test_one_stale_person_among_several_reaches_the_stale_data_metric(harness: Harness, logs: LogCapture) -> None:
    first = harness.llu.add_patient(EMAIL, seed=1)
    second = harness.llu.add_patient(EMAIL, seed=2)
    other = NightscoutStandIn(harness.clock).start()
    harness.provision()
    harness.secret_targets(
        [
            {
                "LINK_UP_CONNECTION": first.id,
                "NIGHTSCOUT_URL": harness.ns.base_url,
                "NIGHTSCOUT_API_TOKEN": harness.ns_token,
            },
            {
                "LINK_UP_CONNECTION": second.id,
                "NIGHTSCOUT_URL": other.base_url,
                "NIGHTSCOUT_API_TOKEN": other.uploader_token(),
            },
        ]
    )
    for _ in range(6):
        harness.run()
        harness.tick(300)
    second.offline(harness.clock() - 290, harness.clock() + 7200)  # the second person's phone stops uploading
    for _ in range(6):  # until the history LibreLink Up still had from before is in
        logs.text()
        harness.run()
        harness.tick(300)
    text = logs.text()
    metrics = emf(text)
    (line,) = summary_lines(text)
    assert line["summary"]["uploaded"] >= 1  # the first person's readings still flow
    assert values(metrics, "LeastReadingsUploaded") == [0.0]  # but the stale-data alarm sees the second
    per_patient = {t["patient"]: t["uploaded"] for t in line["summary"]["targets"]}  # per person: log fields
    assert len(per_patient) == 2 and sorted(per_patient.values())[0] == 0
    assert all(len(p) == 8 for p in per_patient)  # short hashes, never a name or an id
    other.stop()
