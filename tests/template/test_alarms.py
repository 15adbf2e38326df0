"""Alerting in template.yaml: SNS topic, alarms, their parameters and the metric contract.

Checked on the template the SAM transform produces (what CloudFormation deploys). Conditions,
Fn::If and Rules are evaluated here with a small resolver, so a setting that only goes wrong for
some parameter values (a 15-minute schedule, the largest stale window) fails a test too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.template import (
    FUNCTION_ID,
    REPO_ROOT,
    function_environment,
    load_template,
    transformed_template,
)

# --------------------------------------------------------------------------- the metric contract

# What the function emits (Powertools Metrics, embedded metric format). A change on either side,
# the emitting code or the alarms, must be made on the other side and here.
NAMESPACE = "LinkupSync"
SERVICE = "linkup-sync"
# Exactly one custom metric (0.30 USD a month each, free tier ignored): the stale-data alarm's. Every
# other number is a field of the `sync run finished` log line, read by the saved Logs Insights queries.
METRIC_CONTRACT: dict[str, list[tuple[str, ...]]] = {
    "LeastReadingsUploaded": [("service",)],
}
# Alarms never split by reason: one alarm must see every reason.
ALARM_DIMENSIONS = ("service",)

TOPIC_ID = "AlertTopic"
REF_TOPIC = {"Ref": TOPIC_ID}
SERVICE_DIMENSION = [{"Name": "service", "Value": SERVICE}]

# Period of the alarms on runs: one schedule tick, at least 5 minutes.
RUN_PERIOD = {
    "1 minute": 300,
    "2 minutes": 300,
    "3 minutes": 300,
    "5 minutes": 300,
    "10 minutes": 600,
    "15 minutes": 900,
}

ONE_DAY = 86_400  # longest evaluation range of an alarm whose period is under one hour


def _schedule_minutes(rate: str) -> int:
    return int(rate.split()[0])


# --------------------------------------------------------------------------- a small resolver


class _Unresolved(Exception):
    pass


def _parameter_values(cfn: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    values = {name: spec.get("Default") for name, spec in cfn["Parameters"].items()}
    values.update(overrides or {})
    return values


def _resolve(node: Any, cfn: dict[str, Any], params: dict[str, Any]) -> Any:
    """Evaluate Ref (to parameters), Condition, Fn::If/Equals/Not/Or/Contains; keep the rest."""
    if isinstance(node, list):
        return [_resolve(item, cfn, params) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref" and value in params:
            return params[value]
        if key == "Condition":
            return _resolve(cfn["Conditions"][value], cfn, params)
        if key == "Fn::If":
            name, if_true, if_false = value
            chosen = if_true if _resolve(cfn["Conditions"][name], cfn, params) else if_false
            return _resolve(chosen, cfn, params)
        if key == "Fn::Equals":
            left, right = (str(_resolve(item, cfn, params)) for item in value)
            return left == right
        if key == "Fn::Not":
            return not _resolve(value[0], cfn, params)
        if key == "Fn::Or":
            return any(_resolve(item, cfn, params) for item in value)
        if key == "Fn::And":
            return all(_resolve(item, cfn, params) for item in value)
        if key == "Fn::Contains":
            values, wanted = value
            return str(_resolve(wanted, cfn, params)) in [str(v) for v in _resolve(values, cfn, params)]
    return {key: _resolve(value, cfn, params) for key, value in node.items()}


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Unresolved(value)
    return int(value)


def _rules_pass(cfn: dict[str, Any], params: dict[str, Any]) -> bool:
    for rule in cfn.get("Rules", {}).values():
        if "RuleCondition" in rule and not _resolve(rule["RuleCondition"], cfn, params):
            continue
        if not all(_resolve(assertion["Assert"], cfn, params) for assertion in rule["Assertions"]):
            return False
    return True


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return transformed_template()


@pytest.fixture(scope="module")
def alarms(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        lid: resource["Properties"]
        for lid, resource in cfn["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def _alarm(cfn: dict[str, Any], alarm_id: str, **overrides: Any) -> dict[str, Any]:
    resource = cfn["Resources"][alarm_id]
    assert resource["Type"] == "AWS::CloudWatch::Alarm"
    resolved: dict[str, Any] = _resolve(resource["Properties"], cfn, _parameter_values(cfn, overrides))
    return resolved


# --------------------------------------------------------------------------- alarms


EXPECTED_ALARMS: dict[str, dict[str, Any]] = {
    "StaleDataAlarm": {
        "Namespace": NAMESPACE,
        "MetricName": "LeastReadingsUploaded",
        "Dimensions": SERVICE_DIMENSION,
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 30,
        "DatapointsToAlarm": 30,
        "ComparisonOperator": "LessThanThreshold",
        "Threshold": 1,
        "TreatMissingData": "breaching",
    },
    "FailingRunsAlarm": {
        "Namespace": "AWS/Lambda",
        "MetricName": "Errors",
        "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": FUNCTION_ID}}],
        "Statistic": "Sum",
        "Period": 300,
        "EvaluationPeriods": 6,
        "DatapointsToAlarm": 3,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "Threshold": 1,
        "TreatMissingData": "notBreaching",
    },
}


def test_the_template_has_exactly_the_tested_alarms(alarms: dict[str, dict[str, Any]]) -> None:
    assert sorted(alarms) == sorted(EXPECTED_ALARMS)


@pytest.mark.parametrize("alarm_id", sorted(EXPECTED_ALARMS))
def test_alarm_settings_with_default_parameters(cfn: dict[str, Any], alarm_id: str) -> None:
    alarm = _alarm(cfn, alarm_id)
    for key, expected in EXPECTED_ALARMS[alarm_id].items():
        assert alarm[key] == expected, key
    assert "ExtendedStatistic" not in alarm and "Metrics" not in alarm
    assert "Unit" not in alarm  # a Unit that differs from the emitted one matches no data


@pytest.mark.parametrize("alarm_id", sorted(EXPECTED_ALARMS))
def test_alarm_notifies_the_topic_on_alarm_and_on_recovery(cfn: dict[str, Any], alarm_id: str) -> None:
    properties = cfn["Resources"][alarm_id]["Properties"]
    assert properties["AlarmActions"] == [REF_TOPIC]
    assert properties["OKActions"] == [REF_TOPIC]
    assert properties.get("ActionsEnabled", True) is True


def test_alarm_names_are_unique_per_stack(alarms: dict[str, dict[str, Any]]) -> None:
    # Two stacks in one account must not collide: a fixed name has to contain the stack name.
    for lid, alarm in alarms.items():
        name = alarm.get("AlarmName")
        assert name is None or "${AWS::StackName}" in json.dumps(name), lid


def test_stale_alarm_counts_the_whole_window(cfn: dict[str, Any]) -> None:
    stale = cfn["Parameters"]["StaleAfterMinutes"]
    source = cfn["Resources"]["StaleDataAlarm"]["Properties"]
    # CloudFormation cannot multiply: StaleAfterMinutes one-minute periods, every one breaching.
    assert source["Period"] == 60
    assert source["EvaluationPeriods"] == {"Ref": "StaleAfterMinutes"}
    assert source["DatapointsToAlarm"] == {"Ref": "StaleAfterMinutes"}
    for minutes in (stale["MinValue"], stale["Default"], 45, stale["MaxValue"]):
        alarm = _alarm(cfn, "StaleDataAlarm", StaleAfterMinutes=minutes)
        periods = _as_int(alarm["EvaluationPeriods"])
        assert alarm["Period"] * periods == minutes * 60
        assert _as_int(alarm["DatapointsToAlarm"]) == periods
        assert alarm["Period"] * periods <= ONE_DAY


@pytest.mark.parametrize(("rate", "period"), sorted(RUN_PERIOD.items()))
def test_run_alarms_use_one_period_per_schedule_tick(cfn: dict[str, Any], rate: str, period: int) -> None:
    assert cfn["Parameters"]["ScheduleRate"]["AllowedValues"] == list(RUN_PERIOD)
    for alarm_id in ("FailingRunsAlarm",):
        alarm = _alarm(cfn, alarm_id, ScheduleRate=rate)
        assert alarm["Period"] == period, alarm_id
        # Every period holds at least one run, so a quiet period is never a false "all clear".
        assert period >= _schedule_minutes(rate) * 60


def test_every_alarm_period_and_range_is_valid_for_every_parameter_value(cfn: dict[str, Any]) -> None:
    parameters = cfn["Parameters"]
    for rate in parameters["ScheduleRate"]["AllowedValues"]:
        extremes = {
            "ScheduleRate": rate,
            "StaleAfterMinutes": parameters["StaleAfterMinutes"]["MaxValue"],
            "FailedRunsWindow": parameters["FailedRunsWindow"]["MaxValue"],
            "FailedRunsToAlarm": parameters["FailedRunsToAlarm"]["MaxValue"],
        }
        for alarm_id in EXPECTED_ALARMS:
            alarm = _alarm(cfn, alarm_id, **extremes)
            period = alarm["Period"]
            assert isinstance(period, int) and period >= 60 and period % 60 == 0, alarm_id
            assert period < 3600 and period * _as_int(alarm["EvaluationPeriods"]) <= ONE_DAY, alarm_id
            assert 1 <= _as_int(alarm["DatapointsToAlarm"]) <= _as_int(alarm["EvaluationPeriods"]), alarm_id


def test_failing_runs_alarm_is_m_of_n_from_the_parameters(cfn: dict[str, Any]) -> None:
    source = cfn["Resources"]["FailingRunsAlarm"]["Properties"]
    assert source["DatapointsToAlarm"] == {"Ref": "FailedRunsToAlarm"}
    assert source["EvaluationPeriods"] == {"Ref": "FailedRunsWindow"}
    alarm = _alarm(cfn, "FailingRunsAlarm", FailedRunsToAlarm=2, FailedRunsWindow=4)
    assert (alarm["DatapointsToAlarm"], alarm["EvaluationPeriods"]) == (2, 4)


# --------------------------------------------------------------------------- the metric contract


def test_function_emits_into_the_contract_namespace_and_service() -> None:
    environment = function_environment()
    assert environment["POWERTOOLS_METRICS_NAMESPACE"] == NAMESPACE
    assert environment["POWERTOOLS_SERVICE_NAME"] == SERVICE


def test_alarms_use_only_contract_metrics_and_dimension_sets(cfn: dict[str, Any]) -> None:
    for lid, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        alarm = resource["Properties"]
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        if alarm["Namespace"] == "AWS/Lambda":
            assert alarm["MetricName"] == "Errors", lid
            assert dimensions == {"FunctionName": {"Ref": FUNCTION_ID}}, lid
            continue
        assert alarm["Namespace"] == NAMESPACE, lid
        assert alarm["MetricName"] in METRIC_CONTRACT, lid
        assert tuple(sorted(dimensions)) == ALARM_DIMENSIONS, lid
        assert ALARM_DIMENSIONS in METRIC_CONTRACT[alarm["MetricName"]], lid
        assert dimensions["service"] == SERVICE, lid


def _python_sources() -> str:
    roots = [REPO_ROOT / "functions", REPO_ROOT / "layers"]
    files: list[Path] = [path for root in roots for path in sorted(root.rglob("*.py"))]
    return "\n".join(path.read_text(encoding="utf-8") for path in files)


def test_the_code_names_every_contract_metric() -> None:
    """The emitting side: every metric of the contract is named in functions/ or layers/."""
    sources = _python_sources()
    missing = [name for name in METRIC_CONTRACT if f'"{name}"' not in sources and f"'{name}'" not in sources]
    assert not missing, f"metrics of the alarm contract that the code never names: {missing}"


# --------------------------------------------------------------------------- parameters


def test_alert_parameters(cfn: dict[str, Any]) -> None:
    parameters = cfn["Parameters"]
    email = parameters["AlarmEmail"]
    assert (email["Type"], email["Default"]) == ("String", "")
    stale = parameters["StaleAfterMinutes"]
    assert (stale["Type"], stale["Default"], stale["MinValue"], stale["MaxValue"]) == ("Number", 30, 10, 1440)
    to_alarm = parameters["FailedRunsToAlarm"]
    window = parameters["FailedRunsWindow"]
    assert (to_alarm["Type"], to_alarm["Default"], to_alarm["MinValue"]) == ("Number", 3, 1)
    assert (window["Type"], window["Default"], window["MinValue"]) == ("Number", 6, 1)
    assert to_alarm["Default"] <= window["Default"]
    assert to_alarm["MaxValue"] <= window["MaxValue"]
    # The largest window fits one day even with 15-minute periods.
    assert window["MaxValue"] * max(RUN_PERIOD.values()) <= ONE_DAY
    for name in ("AlarmEmail", "StaleAfterMinutes", "FailedRunsToAlarm", "FailedRunsWindow"):
        assert parameters[name].get("Description"), name


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("carer@example.com", True),
        ("first.last+alerts@mail.example.co.uk", True),
        ("not an address", False),
        ("carer@example", False),
        ("a@example.com,b@example.com", False),
        ("a@example.com b@example.com", False),
    ],
)
def test_alarm_email_pattern(cfn: dict[str, Any], value: str, accepted: bool) -> None:
    # CloudFormation matches AllowedPattern against the whole value.
    pattern = cfn["Parameters"]["AlarmEmail"]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) is accepted


def test_alert_parameters_are_grouped_and_labelled() -> None:
    interface = load_template()["Metadata"]["AWS::CloudFormation::Interface"]
    groups = {group["Label"]["default"]: group["Parameters"] for group in interface["ParameterGroups"]}
    assert groups["Alerts"] == [
        "AlarmEmail",
        "StaleAfterMinutes",
        "FailedRunsToAlarm",
        "FailedRunsWindow",
        "CreateDashboard",
    ]
    for name in groups["Alerts"]:
        assert interface["ParameterLabels"][name]["default"], name


@pytest.mark.parametrize("rate", list(RUN_PERIOD))
def test_rules_require_a_stale_window_of_two_schedule_ticks(cfn: dict[str, Any], rate: str) -> None:
    stale = cfn["Parameters"]["StaleAfterMinutes"]
    for minutes in range(stale["MinValue"], 61):
        params = _parameter_values(cfn, {"ScheduleRate": rate, "StaleAfterMinutes": minutes})
        assert _rules_pass(cfn, params) is (minutes >= 2 * _schedule_minutes(rate)), (rate, minutes)
    assert _rules_pass(cfn, _parameter_values(cfn)), "the defaults must deploy"


# --------------------------------------------------------------------------- topic and subscription


def test_topic_is_not_encrypted_with_the_aws_managed_key(cfn: dict[str, Any]) -> None:
    topic = cfn["Resources"][TOPIC_ID]
    assert topic["Type"] == "AWS::SNS::Topic"
    properties = topic.get("Properties", {})
    # alias/aws/sns does not let CloudWatch publish: every alert would be lost silently.
    assert "aws/sns" not in json.dumps(properties.get("KmsMasterKeyId", ""))
    assert "TopicName" not in properties  # two stacks must not collide
    assert "Subscription" not in properties  # the e-mail is the conditional resource below


def test_email_subscription_exists_only_with_an_address(cfn: dict[str, Any]) -> None:
    subscriptions = {
        lid: resource for lid, resource in cfn["Resources"].items() if resource["Type"] == "AWS::SNS::Subscription"
    }
    assert len(subscriptions) == 1, sorted(subscriptions)
    (subscription,) = subscriptions.values()
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {
        "TopicArn": REF_TOPIC,
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    condition = cfn["Conditions"]["HasAlarmEmail"]
    assert _resolve(condition, cfn, _parameter_values(cfn)) is False
    assert _resolve(condition, cfn, _parameter_values(cfn, {"AlarmEmail": "carer@example.com"})) is True


def test_topic_policy_lets_cloudwatch_of_this_account_publish(cfn: dict[str, Any]) -> None:
    policies = [resource for resource in cfn["Resources"].values() if resource["Type"] == "AWS::SNS::TopicPolicy"]
    assert len(policies) == 1
    properties = policies[0]["Properties"]
    assert properties["Topics"] == [REF_TOPIC]
    statements = properties["PolicyDocument"]["Statement"]
    publish = [
        s for s in statements if s["Effect"] == "Allow" and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(publish) == 1
    statement = publish[0]
    assert statement["Action"] in ("sns:Publish", ["sns:Publish"])
    assert statement["Resource"] == REF_TOPIC
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    # Nothing else is allowed to anyone.
    for other in statements:
        if other is not statement:
            assert other["Effect"] == "Deny"


# --------------------------------------------------------------------------- descriptions


def _substituted(value: Any, cfn: dict[str, Any]) -> str:
    """An AlarmDescription with Fn::Sub filled from the parameter defaults and a sample stack name."""
    if isinstance(value, str):
        return value
    assert set(value) == {"Fn::Sub"}, value
    params = _parameter_values(cfn, {"AWS::StackName": "linkup-sync"})

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in params, f"${{{name}}} is neither a parameter nor AWS::StackName"
        return str(params[name])

    return re.sub(r"\$\{([^}!]+)\}", fill, value["Fn::Sub"])


@pytest.mark.parametrize("alarm_id", sorted(EXPECTED_ALARMS))
def test_alarm_description_says_what_happened_and_what_to_do(cfn: dict[str, Any], alarm_id: str) -> None:
    description = _substituted(cfn["Resources"][alarm_id]["Properties"]["AlarmDescription"], cfn)
    assert len(description) <= 1024  # CloudWatch's limit
    assert "make logs" in description
    assert re.search(r"`sam logs [^`]*-t`", description)
    assert "Alerts" in description and "Troubleshooting" in description and "README" in description
    assert "OK e-mail" in description  # what the recovery message means
    assert "${" not in description
    # Plain words: no metric names, namespaces or comparison operators in the text.
    for jargon in (*METRIC_CONTRACT, NAMESPACE, "Threshold", "datapoint", "EMF"):
        assert jargon not in description, jargon


def test_stale_description_names_the_configured_window(cfn: dict[str, Any]) -> None:
    description = _substituted(cfn["Resources"]["StaleDataAlarm"]["Properties"]["AlarmDescription"], cfn)
    assert "for 30 minutes" in description


# --------------------------------------------------------------------------- outputs and dashboard


def test_alert_outputs(cfn: dict[str, Any]) -> None:
    outputs = cfn["Outputs"]
    assert outputs["AlertTopicArn"]["Value"] == REF_TOPIC
    command = outputs["SubscribeCommand"]["Value"]["Fn::Sub"]
    assert command.startswith("aws sns subscribe --topic-arn ${AlertTopic} --protocol email --notification-endpoint ")
    assert "${AlertsDashboard}" in outputs["AlertsDashboardUrl"]["Value"]["Fn::Sub"]
    assert outputs["AlertsDashboardUrl"]["Condition"] == "WantsDashboard"


def _dashboard_body(cfn: dict[str, Any]) -> dict[str, Any]:
    dashboards = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    assert len(dashboards) == 1
    properties = dashboards[0]["Properties"]
    assert "DashboardName" not in properties  # two stacks must not collide
    text = properties["DashboardBody"]["Fn::Sub"]
    references = set(re.findall(r"\$\{([^}]+)\}", text))
    known = set(cfn["Resources"]) | {"AWS::Region"}
    assert {ref.split(".")[0] for ref in references} <= known, references
    body: dict[str, Any] = json.loads(re.sub(r"\$\{[^}]+\}", "x", text))
    return body


def test_dashboard_shows_the_alarms_and_only_contract_metrics(cfn: dict[str, Any]) -> None:
    body = _dashboard_body(cfn)
    text = cfn["Resources"]["AlertsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for alarm_id in EXPECTED_ALARMS:
        assert f"${{{alarm_id}.Arn}}" in text, alarm_id
    plotted: set[str] = set()
    queried = 0
    for widget in body["widgets"]:
        if widget["type"] == "log":  # Logs Insights over the run summary line
            assert "sync run finished" in widget["properties"]["query"]
            queried += 1
        for metric in widget["properties"].get("metrics", []):
            if metric[0] == NAMESPACE:
                _, name, dimension, value = metric[:4]
                assert name in METRIC_CONTRACT and (dimension, value) == ("service", SERVICE), metric
                plotted.add(name)
            else:
                assert metric[0] == "AWS/Lambda", metric  # Lambda's own metrics cost nothing
    assert plotted == {"LeastReadingsUploaded"} and queried >= 2


def test_dashboard_is_opt_in_and_off_by_default(cfn: dict[str, Any]) -> None:
    # 3 USD a month beyond an account's first three dashboards: only with CreateDashboard=true.
    assert cfn["Resources"]["AlertsDashboard"]["Condition"] == "WantsDashboard"
    assert cfn["Parameters"]["CreateDashboard"]["Default"] == "false"
    condition = {"Condition": "WantsDashboard"}
    assert _resolve(condition, cfn, _parameter_values(cfn)) is False
    assert _resolve(condition, cfn, _parameter_values(cfn, {"CreateDashboard": "true"})) is True


def test_stale_alarm_fires_when_the_function_stops_running(cfn: dict[str, Any]) -> None:
    """No run means no data point: missing data must count as "no reading uploaded" (breaching)."""
    alarm = _alarm(cfn, "StaleDataAlarm")
    assert alarm["TreatMissingData"] == "breaching"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    # A stopped function leaves every period of the window empty: all of them breach.
    assert _as_int(alarm["DatapointsToAlarm"]) == _as_int(alarm["EvaluationPeriods"])


def test_saved_queries_read_the_summary_line_of_the_function_log_group(cfn: dict[str, Any]) -> None:
    queries = {lid: r["Properties"] for lid, r in cfn["Resources"].items() if r["Type"] == "AWS::Logs::QueryDefinition"}
    assert len(queries) >= 4
    for lid, query in queries.items():
        assert query["LogGroupNames"] == [{"Ref": "SyncLogGroup"}], lid
        assert "${AWS::StackName}" in json.dumps(query["Name"]), lid  # two stacks must not collide
    text = " ".join(q["QueryString"] for q in queries.values())
    for field in ("summary.uploaded", "summary.gap_filled", "summary.newest_reading_age_s", "summary.logins",
                  "summary.failed", "summary.skipped", "cold_start", "incident"):  # fmt: skip
        assert field in text, field
