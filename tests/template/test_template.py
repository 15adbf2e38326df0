"""template.yaml, samconfig.toml and events/ against the deployment contract.

Offline: cfn-lint and the SAM translator run as libraries; DynamoDB is moto.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import datetime
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint, lint_all
from moto import mock_aws
from tools.pin_powertools import locked_version, parameter_name

from tests.support.template import (
    FUNCTION_ID,
    LAYER_ID,
    LOG_GROUP_ID,
    REPO_ROOT,
    SCHEDULE_EVENT_ID,
    SECRET_ID,
    TABLE_ID,
    TEMPLATE_PATH,
    as_list,
    create_state_table,
    function_environment,
    function_role_statements,
    load_template,
    transformed_template,
)

REF_TABLE_ARN = {"Fn::GetAtt": [TABLE_ID, "Arn"]}
REF_SECRET = {"Ref": SECRET_ID}

SCHEDULER_INPUT = {
    "scheduled_time": "<aws.scheduler.scheduled-time>",
    "execution_id": "<aws.scheduler.execution-id>",
    "schedule_arn": "<aws.scheduler.schedule-arn>",
    "attempt": "<aws.scheduler.attempt-number>",
}

CONTRACT_ENVIRONMENT: dict[str, Any] = {
    "LINK_UP_REGION": {"Ref": "LinkUpRegion"},
    "LINK_UP_CONNECTION": {"Ref": "LinkUpConnection"},
    "LINK_UP_VERSION": {"Ref": "LinkUpVersion"},
    "LINK_UP_API_URL": {"Ref": "LinkUpApiUrl"},
    "NIGHTSCOUT_API_V3": {"Ref": "NightscoutApiV3"},
    "NIGHTSCOUT_SENSOR_START": {"Ref": "NightscoutSensorStart"},
    "NIGHTSCOUT_ANNOUNCE": {"Ref": "NightscoutAnnounce"},
    "TREND_ARROWS": {"Ref": "TrendArrows"},
    "NIGHTSCOUT_DEVICE_NAME": {"Ref": "NightscoutDeviceName"},  # issue 23: nightscout-librelink-up's name
    "ALERT_TOPIC_ARN": {"Ref": "AlertTopic"},
    "STALE_AFTER_MINUTES": {"Ref": "StaleAfterMinutes"},
    "LINK_UP_AUTO_ACCEPT_TERMS": {"Ref": "LinkUpAutoAcceptTerms"},
    "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
    "STATE_TABLE_NAME": {"Ref": TABLE_ID},
    "CREDENTIALS_SECRET_ID": {"Ref": SECRET_ID},
    "POWERTOOLS_SERVICE_NAME": "linkup-sync",
    "POWERTOOLS_METRICS_NAMESPACE": "LinkupSync",
}

CLOUDWATCH_RETENTION_DAYS = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
]  # fmt: skip

BASIC_EXECUTION_ROLE = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


# --------------------------------------------------------------------------- helpers


def _resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in template["Resources"].items() if res["Type"] == resource_type}


def _only(template: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    found = _resources_of_type(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def _lint_summary(matches: list[Any]) -> str:
    return "\n".join(f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return transformed_template()


@pytest.fixture(scope="module")
def function(cfn: dict[str, Any]) -> dict[str, Any]:
    resource = cfn["Resources"][FUNCTION_ID]
    assert resource["Type"] == "AWS::Lambda::Function"
    return dict(resource["Properties"])


@pytest.fixture(scope="module")
def lint_matches() -> list[Any]:
    # All rules, informational and experimental ones included, in every region.
    return list(lint_all(TEMPLATE_PATH.read_text(encoding="utf-8")))


# --------------------------------------------------------------------------- cfn-lint


def test_cfn_lint_reports_no_errors_or_warnings(lint_matches: list[Any]) -> None:
    serious = [m for m in lint_matches if m.rule.id[0] in "EW"]
    assert not serious, _lint_summary(serious)


def test_cfn_lint_reports_nothing_even_informational(lint_matches: list[Any]) -> None:
    assert not lint_matches, _lint_summary(lint_matches)


def test_transformed_template_passes_cfn_lint(cfn: dict[str, Any]) -> None:
    """The CloudFormation SAM generates (not only the SAM source) must be valid too."""
    matches = lint(json.dumps(cfn), config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert not matches, _lint_summary(matches)


# --------------------------------------------------------------------------- function


def test_transform_produces_the_expected_resources(cfn: dict[str, Any]) -> None:
    types = sorted(res["Type"] for res in cfn["Resources"].values())
    assert types == sorted(
        [
            "AWS::Lambda::Function",
            "AWS::Lambda::LayerVersion",
            "AWS::Lambda::EventInvokeConfig",
            "AWS::IAM::Role",  # function role
            "AWS::IAM::Role",  # scheduler role
            "AWS::Scheduler::Schedule",
            "AWS::Logs::LogGroup",
            "AWS::DynamoDB::Table",
            "AWS::SecretsManager::Secret",
            "AWS::SNS::Topic",  # alerts
            "AWS::SNS::TopicPolicy",
            "AWS::SNS::Subscription",
            "AWS::CloudWatch::Alarm",  # stale data
            "AWS::CloudWatch::Alarm",  # failing runs (AWS/Lambda Errors)
            "AWS::CloudWatch::Dashboard",  # only with CreateDashboard=true (test_alarms checks the condition)
            # saved Logs Insights queries (free) for the numbers that are log fields, not metrics
            *["AWS::Logs::QueryDefinition"] * 5,
        ]
    )


def test_function_runtime_architecture_and_limits(function: dict[str, Any], cfn: dict[str, Any]) -> None:
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == "app.handler"
    assert isinstance(function["Timeout"], int) and 0 < function["Timeout"] <= 60
    assert function["MemorySize"] == {"Ref": "MemorySize"}
    memory = cfn["Parameters"]["MemorySize"]
    assert memory["Type"] == "Number"
    assert (memory["Default"], memory["MinValue"], memory["MaxValue"]) == (256, 128, 256)


def test_function_source_is_the_local_folder(template: dict[str, Any]) -> None:
    properties = template["Resources"][FUNCTION_ID]["Properties"]
    assert properties["CodeUri"].rstrip("/") == "functions/sync"
    # `sam build` prints "Build Succeeded" even for a missing folder: check it here.
    module, _, attribute = properties["Handler"].partition(".")
    app = REPO_ROOT / properties["CodeUri"] / f"{module}.py"
    assert app.is_file(), f"{app} is missing"
    assert re.search(rf"^(async )?def {attribute}\(", app.read_text(encoding="utf-8"), re.M)
    # No requirements.txt: nothing to install, `sam build` needs no python3.13 on PATH.
    assert not (REPO_ROOT / properties["CodeUri"] / "requirements.txt").exists()


def test_function_uses_project_layer_and_powertools_layer(function: dict[str, Any], cfn: dict[str, Any]) -> None:
    layer_id, layer = _only(cfn, "AWS::Lambda::LayerVersion")
    assert layer_id.startswith(LAYER_ID)
    assert function["Layers"] == [{"Ref": layer_id}, {"Ref": "PowertoolsLayerArn"}]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["DeletionPolicy"] == "Delete"  # RetentionPolicy: Delete

    powertools = cfn["Parameters"]["PowertoolsLayerArn"]
    assert powertools["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert powertools["Default"] == parameter_name(locked_version())  # issue 25: the tested version, not latest


def test_layer_ships_the_package_without_a_python_build_step(template: dict[str, Any]) -> None:
    properties = template["Resources"][LAYER_ID]["Properties"]
    assert properties["RetentionPolicy"] == "Delete"
    # A python3.x build method would need that Python on PATH; the Makefile only copies the package
    # (without __pycache__, issue 13: tests/template/test_first_hour.py).
    assert template["Resources"][LAYER_ID].get("Metadata", {}).get("BuildMethod") == "makefile"
    content = REPO_ROOT / properties["ContentUri"]
    assert (content / "python" / "linkup_sync" / "__init__.py").is_file()
    assert not list(content.rglob("requirements.txt"))


def test_async_invocation_is_not_retried(function: dict[str, Any], cfn: dict[str, Any]) -> None:
    _, config = _only(cfn, "AWS::Lambda::EventInvokeConfig")
    properties = config["Properties"]
    assert properties["FunctionName"] == {"Ref": FUNCTION_ID}
    assert properties["MaximumRetryAttempts"] == 0
    assert properties["MaximumEventAgeInSeconds"] == 120


def test_function_logs_json_to_its_log_group(function: dict[str, Any], cfn: dict[str, Any]) -> None:
    assert function["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": LOG_GROUP_ID}}
    log_group = cfn["Resources"][LOG_GROUP_ID]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    retention = cfn["Parameters"]["LogRetentionDays"]
    assert retention["Default"] == 30
    assert retention["AllowedValues"] == CLOUDWATCH_RETENTION_DAYS


def test_no_xray_tracing(template: dict[str, Any], cfn: dict[str, Any], function: dict[str, Any]) -> None:
    assert "Tracing" not in template["Resources"][FUNCTION_ID]["Properties"]
    assert "Tracing" not in template.get("Globals", {}).get("Function", {})
    assert "TracingConfig" not in function
    assert "xray" not in json.dumps(cfn).lower()


# --------------------------------------------------------------------------- schedule


def test_schedule_event(template: dict[str, Any], cfn: dict[str, Any]) -> None:
    event = template["Resources"][FUNCTION_ID]["Properties"]["Events"][SCHEDULE_EVENT_ID]
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["OmitName"] is True

    _, schedule = _only(cfn, "AWS::Scheduler::Schedule")
    properties = schedule["Properties"]
    # No Name: two stacks in one account must not collide.
    assert "Name" not in properties
    assert properties["ScheduleExpression"] == {"Fn::Sub": "rate(${ScheduleRate})"}
    assert properties["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = properties["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [FUNCTION_ID, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert isinstance(target["Input"], str)
    assert json.loads(target["Input"]) == SCHEDULER_INPUT


def test_schedule_rate_parameter(cfn: dict[str, Any]) -> None:
    rate = cfn["Parameters"]["ScheduleRate"]
    assert rate["Type"] == "String"
    assert rate["Default"] == "5 minutes"
    assert rate["AllowedValues"] == [
        "1 minute",
        "2 minutes",
        "3 minutes",
        "5 minutes",
        "10 minutes",
        "15 minutes",
    ]
    # Scheduler rejects "rate(1 minutes)" and "rate(5 minute)".
    for value in rate["AllowedValues"]:
        assert re.fullmatch(r"1 minute|([2-9]|[1-9][0-9]+) minutes", value), value


def test_one_minute_schedule_is_allowed() -> None:
    cfn = transformed_template({"ScheduleRate": "1 minute"})
    _, schedule = _only(cfn, "AWS::Scheduler::Schedule")
    expression = schedule["Properties"]["ScheduleExpression"]["Fn::Sub"]
    assert expression.replace("${ScheduleRate}", "1 minute") == "rate(1 minute)"


# --------------------------------------------------------------------------- IAM


def test_function_role_is_least_privilege(cfn: dict[str, Any]) -> None:
    statements, managed = function_role_statements(cfn)
    # CloudWatch Logs through the basic execution role; nothing else managed (no X-Ray).
    managed_names = [
        arn if isinstance(arn, str) else json.dumps(arn).replace("${AWS::Partition}", "aws") for arn in managed
    ]
    assert managed_names == [BASIC_EXECUTION_ROLE]

    granted: dict[str, list[Any]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        assert "Condition" not in statement or statement["Condition"]
        resources = as_list(statement["Resource"])
        for action in as_list(statement["Action"]):
            assert isinstance(action, str) and "*" not in action, action
            granted.setdefault(action, []).extend(resources)

    non_logs = {action: res for action, res in granted.items() if not action.startswith("logs:")}
    assert non_logs == {
        "dynamodb:Query": [REF_TABLE_ARN],
        "dynamodb:UpdateItem": [REF_TABLE_ARN],
        "secretsmanager:GetSecretValue": [REF_SECRET],
        "sns:Publish": [{"Ref": "AlertTopic"}],  # the bridge's own alert e-mails, on that topic only
    }
    for resources in granted.values():
        assert "*" not in resources


# --------------------------------------------------------------------------- environment & parameters


def test_environment_variables_come_from_the_right_source(template: dict[str, Any], function: dict[str, Any]) -> None:
    source = template["Resources"][FUNCTION_ID]["Properties"]["Environment"]["Variables"]
    assert source == CONTRACT_ENVIRONMENT
    assert function["Environment"]["Variables"] == CONTRACT_ENVIRONMENT


def test_api_url_keeps_its_region_placeholder(cfn: dict[str, Any]) -> None:
    # {region} is substituted by the code, never by CloudFormation: no Fn::Sub in between.
    assert cfn["Parameters"]["LinkUpApiUrl"]["Default"] == "https://api-{region}.libreview.io"
    assert function_environment()["LINK_UP_API_URL"] == "https://api-{region}.libreview.io"
    assert "Fn::Sub" not in json.dumps(cfn["Resources"][FUNCTION_ID]["Properties"]["Environment"])


@pytest.mark.parametrize(
    ("name", "default", "allowed"),
    [
        (
            "LinkUpRegion",
            "EU",
            ["AE", "AP", "AU", "CA", "DE", "EU", "EU2", "FR", "JP", "US", "LA", "RU", "CN"],
        ),
        ("LinkUpConnection", "", None),
        ("LinkUpVersion", "auto", None),
        ("NightscoutApiV3", "false", ["true", "false"]),
        ("NightscoutSensorStart", "true", ["true", "false"]),
        ("NightscoutAnnounce", "true", ["true", "false"]),
        ("TrendArrows", "derived", ["derived", "libre"]),
        ("NightscoutDeviceName", "linkup-sync", None),
        ("CreateDashboard", "false", ["true", "false"]),
        ("LinkUpAutoAcceptTerms", "false", ["true", "false"]),
        ("LinkUpApiUrl", "https://api-{region}.libreview.io", None),
        ("LogLevel", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR"]),
        ("ScheduleRate", "5 minutes", None),
    ],
)
def test_string_parameters(template: dict[str, Any], name: str, default: str, allowed: list[str] | None) -> None:
    parameter = template["Parameters"][name]
    assert parameter["Type"] == "String"
    assert parameter["Default"] == default
    assert isinstance(parameter["Default"], str)  # "false", not YAML false
    if allowed is not None:
        assert parameter["AllowedValues"] == allowed
    assert parameter.get("Description")


def test_every_parameter_is_used_and_described(template: dict[str, Any]) -> None:
    text = json.dumps(template["Resources"]) + json.dumps(template.get("Conditions", {}))
    for name, parameter in template["Parameters"].items():
        assert parameter.get("Description"), name
        assert f'{{"Ref": "{name}"}}' in text or f"${{{name}}}" in text, f"{name} is unused"


def test_function_environment_helper_resolves_defaults() -> None:
    environment = function_environment()
    assert set(environment) == set(CONTRACT_ENVIRONMENT)
    assert environment["LINK_UP_REGION"] == "EU"
    assert environment["NIGHTSCOUT_API_V3"] == "false"
    assert environment["STATE_TABLE_NAME"] == TABLE_ID
    overridden = function_environment(resources={TABLE_ID: "t"}, parameters={"LogLevel": "DEBUG"})
    assert overridden["STATE_TABLE_NAME"] == "t"
    assert overridden["POWERTOOLS_LOG_LEVEL"] == "DEBUG"


# --------------------------------------------------------------------------- state and credentials


def test_state_table(template: dict[str, Any]) -> None:
    table = template["Resources"][TABLE_ID]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    properties = table["Properties"]
    assert "TableName" not in properties  # two stacks in one account must not collide
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert properties["AttributeDefinitions"] == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}


def test_credentials_secret_is_deployed_without_a_value(template: dict[str, Any]) -> None:
    secret = template["Resources"][SECRET_ID]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    properties = secret["Properties"]
    assert "SecretString" not in properties
    assert "GenerateSecretString" not in properties
    description = properties["Description"]
    for key in ("LINK_UP_USERNAME", "LINK_UP_PASSWORD", "NIGHTSCOUT_URL", "NIGHTSCOUT_API_TOKEN"):
        assert key in description
    assert "aws secretsmanager put-secret-value" in description
    assert len(description) <= 2048


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["SyncFunctionName"]["Value"] == {"Ref": FUNCTION_ID}
    assert outputs["SyncFunctionArn"]["Value"] == {"Fn::GetAtt": [FUNCTION_ID, "Arn"]}
    assert outputs["StateTableName"]["Value"] == {"Ref": TABLE_ID}
    assert outputs["CredentialsSecretArn"]["Value"] == REF_SECRET
    assert outputs["SetSecretCommand"]["Value"] == {
        "Fn::Sub": "aws secretsmanager put-secret-value --secret-id ${CredentialsSecret}"
        " --secret-string file://secret.json"
    }


@mock_aws
def test_create_state_table_follows_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("dynamodb", region_name="us-east-1")
    name = create_state_table(client)

    table = client.describe_table(TableName=name)["Table"]
    properties = load_template()["Resources"][TABLE_ID]["Properties"]
    assert table["KeySchema"] == properties["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(properties["AttributeDefinitions"], key=str)
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl == {"AttributeName": "expires_at", "TimeToLiveStatus": "ENABLED"}

    # The table really takes the key shape the code writes.
    client.update_item(
        TableName=name,
        Key={"pk": {"S": "connection#example"}, "sk": {"S": "state"}},
        UpdateExpression="SET expires_at = :e",
        ExpressionAttributeValues={":e": {"N": "1736928300"}},
    )
    items = client.query(
        TableName=name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "connection#example"}},
    )["Items"]
    assert len(items) == 1


# --------------------------------------------------------------------------- events/ and samconfig


def test_scheduled_event_mirrors_the_schedule_input(cfn: dict[str, Any]) -> None:
    _, schedule = _only(cfn, "AWS::Scheduler::Schedule")
    template_input = json.loads(schedule["Properties"]["Target"]["Input"])
    event = json.loads((REPO_ROOT / "events" / "scheduled.json").read_text(encoding="utf-8"))
    assert list(event) == list(template_input)
    # Scheduler substitutes inside the JSON strings: every value stays a string.
    assert all(isinstance(value, str) for value in event.values())
    assert datetime.fromisoformat(event["scheduled_time"]).utcoffset() is not None
    assert event["schedule_arn"].startswith("arn:aws:scheduler:")
    assert event["attempt"].isdigit()
    assert not any("<aws.scheduler" in value for value in event.values())


def test_env_json_example_matches_the_function_environment() -> None:
    data = json.loads((REPO_ROOT / "events" / "env.json.example").read_text(encoding="utf-8"))
    assert list(data) == [FUNCTION_ID]
    variables = data[FUNCTION_ID]
    assert set(variables) == set(function_environment())
    assert all(isinstance(value, str) for value in variables.values())
    assert "{region}" in variables["LINK_UP_API_URL"]
    from linkup_sync.settings import Settings

    Settings.from_env(variables)  # the example passes the function's own validation as it is
    allowed = load_template()["Parameters"]
    for variable, parameter in (("LINK_UP_REGION", "LinkUpRegion"), ("POWERTOOLS_LOG_LEVEL", "LogLevel")):
        assert variables[variable] in allowed[parameter]["AllowedValues"]


def test_samconfig() -> None:
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    default = config["default"]
    deploy = default["deploy"]["parameters"]
    assert deploy["stack_name"] == "linkup-sync"
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is True
    assert "region" not in deploy  # the user's profile decides
    assert default["global"]["parameters"]["stack_name"] == "linkup-sync"
    validate = default.get("validate", {}).get("parameters", {})
    # lint = true would silently turn plain `sam validate` into cfn-lint only.
    assert "lint" not in validate
    assert validate.get("region") == "us-east-1"
    for section in default.values():
        assert section.get("parameters", {}).get("lint") is not True


def test_link_up_version_default_is_auto_and_matches_the_code(template: dict[str, Any]) -> None:
    """Issue #10: with the template's defaults a minimum-version bump needs no person."""
    import re

    from linkup_sync.settings import DEFAULT_VERSION_SETTING, Settings

    parameter = template["Parameters"]["LinkUpVersion"]
    assert parameter["Default"] == "auto" == DEFAULT_VERSION_SETTING
    pattern = re.compile(parameter["AllowedPattern"])
    for good in ("auto", "4.16.0", "4.17.0", "10.0.12"):
        assert pattern.match(good), good
    for bad in ("", "4.16", "latest", "AUTO "):
        assert not pattern.match(bad), bad
    settings = Settings.from_env({**function_environment(), "CREDENTIALS_SECRET_ID": "arn:secret"})
    assert settings.version_auto and settings.version == "4.16.0"
