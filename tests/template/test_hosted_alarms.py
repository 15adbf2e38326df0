"""The operator alarms of hosted.yaml: what they watch, when they fire, where they go, what they cost.

Checked on the template the SAM transform produces (what CloudFormation deploys).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from linkup_sync.hosted.schedule import DEFAULT_INTERVAL
from tests.support.template import HOSTED_TEMPLATE_PATH, REPO_ROOT, load_template, transformed_template

TOPIC = {"Ref": "OperatorTopic"}
EXPECTED_ALARMS = ("DeadLetterAlarm", "FailingShareAlarm", "QueueAgeAlarm", "WorkerErrorsAlarm")
# CloudWatch bills 0.10 USD a month per metric of a standard-resolution alarm (a metric math alarm pays
# for each metric it reads, not for the expression): keep the stack's count, and so its bill, in view.
METRICS_IN_ALARMS = 6
LONGEST_SPREAD_DELAY_S = 60  # linkup_sync.hosted.schedule.spread: each minute's accounts over 60 seconds


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return transformed_template(path=HOSTED_TEMPLATE_PATH)


@pytest.fixture(scope="module")
def alarms(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lid: r["Properties"] for lid, r in cfn["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def _metrics(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The metric queries of a metric math alarm by id."""
    return {query["Id"]: query for query in alarm["Metrics"]}


def _only_returned(alarm: dict[str, Any]) -> dict[str, Any]:
    returned: list[dict[str, Any]] = [query for query in alarm["Metrics"] if query.get("ReturnData", True)]
    assert len(returned) == 1, returned
    return returned[0]


def test_the_stack_has_exactly_the_tested_alarms(alarms: dict[str, dict[str, Any]]) -> None:
    assert tuple(sorted(alarms)) == EXPECTED_ALARMS


def test_the_alarms_read_six_metrics(alarms: dict[str, dict[str, Any]]) -> None:
    count = sum(
        sum(1 for query in alarm["Metrics"] if "MetricStat" in query) if "Metrics" in alarm else 1
        for alarm in alarms.values()
    )
    assert count == METRICS_IN_ALARMS  # 0.60 USD a month for the whole stack, whatever the number of accounts


@pytest.mark.parametrize("alarm_id", EXPECTED_ALARMS)
def test_every_alarm_tells_the_operator_on_alarm_and_on_recovery(alarms: dict[str, Any], alarm_id: str) -> None:
    alarm = alarms[alarm_id]
    assert alarm["AlarmActions"] == [TOPIC]
    assert alarm["OKActions"] == [TOPIC]
    assert alarm.get("ActionsEnabled", True) is True
    assert "${AWS::StackName}" in json.dumps(alarm["AlarmName"])  # two stacks must not collide
    assert "Unit" not in alarm  # a Unit that differs from the emitted one matches no data


def test_failing_share_alarm(alarms: dict[str, Any], cfn: dict[str, Any]) -> None:
    alarm = alarms["FailingShareAlarm"]
    queries = _metrics(alarm)
    worker_env = cfn["Resources"]["SyncWorkerFunction"]["Properties"]["Environment"]["Variables"]
    # Powertools Metrics: namespace from POWERTOOLS_METRICS_NAMESPACE, dimension service=POWERTOOLS_SERVICE_NAME.
    dimensions = [{"Name": "service", "Value": worker_env["POWERTOOLS_SERVICE_NAME"]}]
    for query_id, metric_name in (("failed", "AccountRunsFailed"), ("runs", "AccountRuns")):
        stat = queries[query_id]["MetricStat"]
        assert stat["Metric"] == {
            "Namespace": worker_env["POWERTOOLS_METRICS_NAMESPACE"],
            "MetricName": metric_name,
            "Dimensions": dimensions,
        }
        assert (stat["Stat"], stat["Period"]) == ("Sum", 60 * DEFAULT_INTERVAL)  # one round of every account
        assert queries[query_id]["ReturnData"] is False
    assert _only_returned(alarm)["Expression"] == "100 * FILL(failed, 0) / runs"
    assert alarm["Threshold"] == {"Ref": "FailingSharePercent"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)
    # No account run at all is a failure too: the dispatcher or its schedule is broken.
    assert alarm["TreatMissingData"] == "breaching"


def test_the_worker_emits_the_failing_share_metrics() -> None:
    source = (REPO_ROOT / "functions" / "worker" / "app.py").read_text(encoding="utf-8")
    for name in ("AccountRuns", "AccountRunsFailed"):
        assert re.search(rf"name=\"{name}\"", source), name


def test_queue_age_alarm(alarms: dict[str, Any]) -> None:
    alarm = alarms["QueueAgeAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["SyncQueue", "QueueName"]}}]
    assert (alarm["Statistic"], alarm["Period"]) == ("Maximum", 60)
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 180)
    # Past any healthy spread delay, before the next interval's message for the same account.
    assert 2 * LONGEST_SPREAD_DELAY_S < alarm["Threshold"] < 60 * DEFAULT_INTERVAL
    assert alarm["TreatMissingData"] == "notBreaching"


def test_worker_errors_alarm_sums_both_functions(alarms: dict[str, Any]) -> None:
    alarm = alarms["WorkerErrorsAlarm"]
    queries = _metrics(alarm)
    for query_id, function_id in (("dispatch", "DispatchFunction"), ("worker", "SyncWorkerFunction")):
        stat = queries[query_id]["MetricStat"]
        assert stat["Metric"] == {
            "Namespace": "AWS/Lambda",
            "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": function_id}}],
        }
        assert (stat["Stat"], stat["Period"]) == ("Sum", 60)
    assert _only_returned(alarm)["Expression"] == "FILL(dispatch, 0) + FILL(worker, 0)"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (5, 3)
    assert alarm["TreatMissingData"] == "notBreaching"


def test_dead_letter_alarm(alarms: dict[str, Any]) -> None:
    alarm = alarms["DeadLetterAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["SyncDeadLetterQueue", "QueueName"]}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert alarm["TreatMissingData"] == "notBreaching"


# --------------------------------------------------------------------------- topic


def test_operator_topic_can_receive_the_alarms(cfn: dict[str, Any]) -> None:
    topic = cfn["Resources"]["OperatorTopic"]["Properties"]
    assert "KmsMasterKeyId" not in topic  # alias/aws/sns would not let CloudWatch publish
    assert "TopicName" not in topic
    (policy,) = [r["Properties"] for r in cfn["Resources"].values() if r["Type"] == "AWS::SNS::TopicPolicy"]
    assert policy["Topics"] == [TOPIC]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert (statement["Action"], statement["Resource"]) == ("sns:Publish", TOPIC)
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}


def test_email_subscription_only_with_an_address(cfn: dict[str, Any]) -> None:
    subscription = cfn["Resources"]["OperatorEmailSubscription"]
    assert subscription["Condition"] == "HasOperatorEmail"
    assert cfn["Conditions"]["HasOperatorEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "OperatorEmail"}, ""]}]}
    properties = subscription["Properties"]
    assert properties == {"TopicArn": TOPIC, "Protocol": "email", "Endpoint": {"Ref": "OperatorEmail"}}


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("operator@example.com", True),
        ("first.last+alarms@mail.example.co.uk", True),
        ("not an address", False),
        ("operator@example", False),
        ("a@example.com,b@example.com", False),
    ],
)
def test_operator_email_pattern(value: str, accepted: bool) -> None:
    # CloudFormation matches AllowedPattern against the whole value.
    pattern = load_template(HOSTED_TEMPLATE_PATH)["Parameters"]["OperatorEmail"]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) is accepted
