"""hosted.yaml (the hosted stack, issue 14) against its deployment contract.

Offline: cfn-lint and the SAM translator run as libraries; DynamoDB, SQS and KMS are moto in-process.
The operator alarms are checked in test_hosted_alarms.py.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint, lint_all
from moto import mock_aws

from linkup_sync.hosted import vault as hosted_vault
from linkup_sync.hosted.settings import STACK_SETTING_KEYS
from linkup_sync.hosted.worker import Worker
from tests.support.iam import (
    WORKER_ROLE_ARN,
    Call,
    Recorder,
    allowed,
    dispatch_policy,
    dynamodb_context,
    key_statements,
    worker_policy,
)
from tests.support.template import (
    HOSTED_TEMPLATE_PATH,
    LAYER_ID,
    OPENING_RESOURCE_TYPES,
    REPO_ROOT,
    TABLE_ID,
    as_list,
    create_state_table,
    function_environment,
    function_role_statements,
    invoke_only,
    load_template,
    schedule_role_statements,
    transformed_template,
)

DISPATCH_ID = "DispatchFunction"
WORKER_ID = "SyncWorkerFunction"
QUEUE_ID = "SyncQueue"
DLQ_ID = "SyncDeadLetterQueue"
KEY_ID = "CredentialsKey"
MAPPING_ID = "SyncQueueMapping"

TABLE_ARN = {"Fn::GetAtt": [TABLE_ID, "Arn"]}
QUEUE_ARN = {"Fn::GetAtt": [QUEUE_ID, "Arn"]}
KEY_ARN = {"Fn::GetAtt": [KEY_ID, "Arn"]}
BASIC_EXECUTION_ROLE = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"

DISPATCH_ENVIRONMENT: dict[str, Any] = {
    "STATE_TABLE_NAME": {"Ref": TABLE_ID},
    "SYNC_QUEUE_URL": {"Ref": QUEUE_ID},
    "POWERTOOLS_SERVICE_NAME": "linkup-sync-hosted",
    "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
}
WORKER_ENVIRONMENT: dict[str, Any] = {
    "STATE_TABLE_NAME": {"Ref": TABLE_ID},
    "CREDENTIALS_KEY_ARN": KEY_ARN,
    "STALE_AFTER_MINUTES": {"Ref": "StaleAfterMinutes"},
    "NIGHTSCOUT_ANNOUNCE": {"Ref": "NightscoutAnnounce"},
    "LINK_UP_AUTO_ACCEPT_TERMS": {"Ref": "LinkUpAutoAcceptTerms"},
    "LINK_UP_API_URL": {"Ref": "LinkUpApiUrl"},
    "NIGHTSCOUT_SENSOR_START": {"Ref": "NightscoutSensorStart"},
    "POWERTOOLS_SERVICE_NAME": "linkup-sync-hosted",
    "POWERTOOLS_METRICS_NAMESPACE": "LinkupSyncHosted",
    "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
}

# The least privilege of each function (issue 14): action -> the resources it is granted on.
DISPATCH_GRANTS = {"dynamodb:Query": [TABLE_ARN], "sqs:SendMessage": [QUEUE_ARN]}
WORKER_GRANTS = {
    "dynamodb:Query": [TABLE_ARN],
    "dynamodb:UpdateItem": [TABLE_ARN, TABLE_ARN],  # its state and incidents; a registry item's claim
    # the three actions Lambda documents for polling an SQS event source
    "sqs:ReceiveMessage": [QUEUE_ARN],
    "sqs:DeleteMessage": [QUEUE_ARN],
    "sqs:GetQueueAttributes": [QUEUE_ARN],
}
# KMS is granted to the worker by CredentialsKey's key policy (issue 21), under the account context only.
WORKER_KEY_ACTIONS = ["kms:Decrypt", "kms:Encrypt"]
ACCOUNT_ROOT = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
# The partitions each function may touch (issue 21): dynamodb:LeadingKeys of its statements.
DISPATCH_CONDITION = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": "due#*"}}
WORKER_STATE_CONDITION = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["acct#*", "incidents#*"]}}
WORKER_CLAIM_CONDITION = {
    "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": "registry", "dynamodb:Attributes": ["pk", "sk", "last_due"]},
    "StringEqualsIfExists": {"dynamodb:ReturnValues": ["NONE", "ALL_OLD"]},
}
# What IAM authorizes a botocore operation as (the batch forms are authorized as the single ones).
IAM_ACTION_OF = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage"}

MOTO_ACCOUNT = "123456789012"
REGION = "us-east-1"


# --------------------------------------------------------------------------- helpers and fixtures


def _lint_summary(matches: list[Any]) -> str:
    return "\n".join(f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(HOSTED_TEMPLATE_PATH)


@pytest.fixture(scope="module")
def personal() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return transformed_template(path=HOSTED_TEMPLATE_PATH)


def _properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return properties


def _granted(cfn: dict[str, Any], function_id: str) -> tuple[dict[str, list[Any]], list[dict[str, Any]], list[Any]]:
    """(action -> resources, the statements, the managed policies) of a function's role, logs left out."""
    statements, managed = function_role_statements(cfn, function_id)
    granted: dict[str, list[Any]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in as_list(statement["Action"]):
            assert isinstance(action, str) and "*" not in action, action
            if not action.startswith("logs:"):
                granted.setdefault(action, []).extend(as_list(statement["Resource"]))
    return granted, statements, managed


def _managed_names(managed: list[Any]) -> list[str]:
    return [arn if isinstance(arn, str) else json.dumps(arn).replace("${AWS::Partition}", "aws") for arn in managed]


def _context_keys_allowed(condition: dict[str, Any], keys: set[str]) -> bool:
    """IAM's evaluation of the multivalued operators on kms:EncryptionContextKeys (the only ones used)."""
    for operator, block in condition.items():
        for condition_key, values in block.items():
            assert condition_key == "kms:EncryptionContextKeys", condition_key
            wanted = set(as_list(values))
            if operator == "ForAnyValue:StringEquals":
                allowed = bool(keys & wanted)
            elif operator == "ForAllValues:StringEquals":
                allowed = keys <= wanted  # also true for no keys at all: hence ForAnyValue as well
            else:
                raise AssertionError(f"unexpected condition operator {operator}")
            if not allowed:
                return False
    return True


def _decrypt_condition(cfn: dict[str, Any]) -> dict[str, Any]:
    (statement,) = key_statements(cfn, WORKER_ROLE_ARN)
    condition: dict[str, Any] = statement["Condition"]
    return condition


# --------------------------------------------------------------------------- cfn-lint


def test_cfn_lint_reports_nothing_even_informational() -> None:
    matches = list(lint_all(HOSTED_TEMPLATE_PATH.read_text(encoding="utf-8")))
    assert not matches, _lint_summary(matches)


def test_transformed_template_passes_cfn_lint(cfn: dict[str, Any]) -> None:
    matches = lint(json.dumps(cfn), config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert not matches, _lint_summary(matches)


def test_make_validate_checks_both_templates() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nvalidate:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"validate --template hosted\.yaml", recipe)
    assert re.search(r"validate --lint --template hosted\.yaml", recipe)


# --------------------------------------------------------------------------- resources


def test_transform_produces_the_expected_resources(cfn: dict[str, Any]) -> None:
    types = sorted(resource["Type"] for resource in cfn["Resources"].values())
    assert types == sorted(
        [
            *["AWS::Lambda::Function"] * 2,  # dispatcher, worker
            *["AWS::IAM::Role"] * 3,  # their roles, and the scheduler's
            "AWS::Lambda::LayerVersion",
            "AWS::Lambda::EventInvokeConfig",  # the dispatcher's: no async retries
            "AWS::Scheduler::Schedule",
            "AWS::Lambda::EventSourceMapping",
            *["AWS::SQS::Queue"] * 2,  # sync queue and its dead-letter queue
            *["AWS::Logs::LogGroup"] * 2,
            "AWS::DynamoDB::Table",
            "AWS::KMS::Key",
            "AWS::KMS::Alias",
            "AWS::SNS::Topic",
            "AWS::SNS::TopicPolicy",
            "AWS::SNS::Subscription",  # only with OperatorEmail (test_hosted_alarms checks the condition)
            *["AWS::CloudWatch::Alarm"] * 4,
        ]
    )
    # One credential store for all accounts: no Secrets Manager secret (0.40 USD a month each).
    assert "AWS::SecretsManager::Secret" not in types


@pytest.mark.parametrize("function_id", [DISPATCH_ID, WORKER_ID])
def test_functions_are_built_by_make_from_their_folder(template: dict[str, Any], function_id: str) -> None:
    resource = template["Resources"][function_id]
    properties = resource["Properties"]
    assert resource["Metadata"]["BuildMethod"] == "makefile"
    folder = REPO_ROOT / properties["CodeUri"]
    assert properties["Handler"] == "app.handler"
    assert re.search(r"^def handler\(", (folder / "app.py").read_text(encoding="utf-8"), re.M)
    makefile = (folder / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split(f"build-{function_id}:", 1)[1]
    assert 'cp app.py "$(ARTIFACTS_DIR)/"' in recipe
    assert "python" not in recipe  # `sam build` needs no python3.13 on PATH
    assert not (folder / "requirements.txt").exists()


def test_function_folders(template: dict[str, Any]) -> None:
    assert _properties(template, DISPATCH_ID)["CodeUri"].rstrip("/") == "functions/dispatch"
    assert _properties(template, WORKER_ID)["CodeUri"].rstrip("/") == "functions/worker"


@pytest.mark.parametrize("function_id", [DISPATCH_ID, WORKER_ID])
def test_functions_runtime_layers_and_logs(cfn: dict[str, Any], function_id: str) -> None:
    function = _properties(cfn, function_id)
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    layer_ids = [lid for lid, r in cfn["Resources"].items() if r["Type"] == "AWS::Lambda::LayerVersion"]
    assert function["Layers"] == [{"Ref": layer_ids[0]}, {"Ref": "PowertoolsLayerArn"}]
    log_group_id = {DISPATCH_ID: "DispatchLogGroup", WORKER_ID: "SyncWorkerLogGroup"}[function_id]
    assert function["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": log_group_id}}
    log_group = cfn["Resources"][log_group_id]
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert log_group["DeletionPolicy"] == "Delete"
    assert "TracingConfig" not in function  # no X-Ray


def test_no_xray_anywhere(template: dict[str, Any], cfn: dict[str, Any]) -> None:
    assert "Globals" not in template
    assert "xray" not in json.dumps(cfn).lower()


def test_dispatcher_limits_and_async_config(cfn: dict[str, Any]) -> None:
    function = _properties(cfn, DISPATCH_ID)
    assert (function["Timeout"], function["MemorySize"]) == (50, 256)
    assert function["Timeout"] < 60  # one dispatch per minute: it ends before the next one starts
    (config,) = [r["Properties"] for r in cfn["Resources"].values() if r["Type"] == "AWS::Lambda::EventInvokeConfig"]
    assert config["FunctionName"] == {"Ref": DISPATCH_ID}
    assert (config["MaximumRetryAttempts"], config["MaximumEventAgeInSeconds"]) == (0, 60)


def test_worker_limits(cfn: dict[str, Any]) -> None:
    function = _properties(cfn, WORKER_ID)
    assert function["Timeout"] == 60
    assert function["MemorySize"] == {"Ref": "MemorySize"}
    # The mapping's MaximumConcurrency bounds the workers; a reservation would take concurrency away
    # from the account and throttle (throttled messages count receives towards the dead-letter queue).
    assert "ReservedConcurrentExecutions" not in function
    memory = cfn["Parameters"]["MemorySize"]
    assert (memory["Type"], memory["Default"], memory["MinValue"]) == ("Number", 256, 128)


def test_layer_is_the_personal_stacks_layer(template: dict[str, Any], personal: dict[str, Any]) -> None:
    """One package, one code path: the same layer resource in both templates."""
    assert template["Resources"][LAYER_ID] == personal["Resources"][LAYER_ID]


def test_state_table_is_the_personal_stacks_table(template: dict[str, Any], personal: dict[str, Any]) -> None:
    hosted_table = template["Resources"][TABLE_ID]
    personal_table = personal["Resources"][TABLE_ID]
    assert hosted_table["Type"] == "AWS::DynamoDB::Table"
    assert hosted_table["Properties"] == personal_table["Properties"]
    assert (hosted_table["DeletionPolicy"], hosted_table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert hosted_table["DeletionPolicy"] == personal_table["DeletionPolicy"]
    assert hosted_table["UpdateReplacePolicy"] == personal_table["UpdateReplacePolicy"]


# --------------------------------------------------------------------------- schedule


def test_dispatch_schedule(template: dict[str, Any], personal: dict[str, Any], cfn: dict[str, Any]) -> None:
    event = _properties(template, DISPATCH_ID)["Events"]["Schedule"]
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["OmitName"] is True
    (schedule,) = [r["Properties"] for r in cfn["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule"]
    assert "Name" not in schedule
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [DISPATCH_ID, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    # The same input as the personal schedule: the dispatcher takes its minute from scheduled_time.
    personal_input = _properties(personal, "SyncFunction")["Events"]["Schedule"]["Properties"]["Input"]
    assert json.loads(target["Input"]) == json.loads(personal_input)
    assert "scheduled_time" in json.loads(target["Input"])


def test_the_worker_has_no_sam_event(template: dict[str, Any]) -> None:
    # A SAM SQS event would attach AWSLambdaSQSQueueExecutionRole (sqs:* of every queue): the mapping
    # is a plain resource instead.
    assert "Events" not in _properties(template, WORKER_ID)


# --------------------------------------------------------------------------- queue and mapping


def test_sync_queue(cfn: dict[str, Any]) -> None:
    queue = _properties(cfn, QUEUE_ID)
    worker_timeout = _properties(cfn, WORKER_ID)["Timeout"]
    assert queue["VisibilityTimeout"] > worker_timeout
    assert queue["VisibilityTimeout"] >= 6 * worker_timeout  # AWS's advice for Lambda event sources
    assert queue["SqsManagedSseEnabled"] is True
    assert "QueueName" not in queue and "KmsMasterKeyId" not in queue
    # Short: the next interval's dispatch replaces an old message (at most 15 minutes, two 5-minute intervals).
    assert 300 < queue["MessageRetentionPeriod"] <= 900
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [DLQ_ID, "Arn"]}
    assert redrive["maxReceiveCount"] >= 2  # one retry of a failed batch before it is set aside


def test_a_message_can_reach_the_dead_letter_queue_before_it_expires(cfn: dict[str, Any]) -> None:
    """A message is received at most once per visibility timeout and is moved on the receive after
    maxReceiveCount; the dispatcher delays messages by up to a minute. All of it must fit the retention,
    or every failing message silently expires and the dead-letter queue (and its alarm) never sees one."""
    queue = _properties(cfn, QUEUE_ID)
    longest_delay = 59  # linkup_sync.hosted.schedule.spread: delays below a minute
    moved_at = longest_delay + queue["RedrivePolicy"]["maxReceiveCount"] * queue["VisibilityTimeout"]
    assert moved_at < queue["MessageRetentionPeriod"]


def test_dead_letter_queue(cfn: dict[str, Any]) -> None:
    dlq = _properties(cfn, DLQ_ID)
    assert dlq["MessageRetentionPeriod"] == 4 * 86_400
    assert dlq["SqsManagedSseEnabled"] is True
    assert "RedrivePolicy" not in dlq


def test_event_source_mapping(cfn: dict[str, Any]) -> None:
    (mapping_id,) = [lid for lid, r in cfn["Resources"].items() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert mapping_id == MAPPING_ID
    mapping = _properties(cfn, MAPPING_ID)
    assert mapping == {
        "EventSourceArn": QUEUE_ARN,
        "FunctionName": {"Ref": WORKER_ID},
        "Enabled": True,
        "BatchSize": {"Ref": "BatchSize"},
        "MaximumBatchingWindowInSeconds": 0,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": {"Ref": "MaximumConcurrency"}},
    }


@pytest.mark.parametrize(
    ("name", "default", "minimum", "maximum"),
    [
        # SQS event sources: at most 10 per batch without a batching window
        ("BatchSize", 10, 1, 10),
        # the range the event source mapping accepts
        ("MaximumConcurrency", 10, 2, 1000),
        ("FailingSharePercent", 20, 1, 99),
        ("StaleAfterMinutes", 30, 10, 1440),
    ],
)
def test_number_parameters(cfn: dict[str, Any], name: str, default: int, minimum: int, maximum: int) -> None:
    parameter = cfn["Parameters"][name]
    assert parameter["Type"] == "Number"
    assert (parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (default, minimum, maximum)


def test_the_worker_runs_a_whole_batch_side_by_side(cfn: dict[str, Any]) -> None:
    """The largest batch fits the worker's threads, so no account of a batch waits for another."""
    threads = inspect.signature(Worker).parameters["max_parallel"].default
    assert cfn["Parameters"]["BatchSize"]["MaxValue"] <= threads


# --------------------------------------------------------------------------- IAM


def test_dispatcher_role_is_least_privilege(cfn: dict[str, Any]) -> None:
    granted, statements, managed = _granted(cfn, DISPATCH_ID)
    assert _managed_names(managed) == [BASIC_EXECUTION_ROLE]
    assert granted == DISPATCH_GRANTS
    # the due partitions only: never the registry, nobody's state, credentials or incidents
    (query,) = [statement for statement in statements if "dynamodb:Query" in as_list(statement["Action"])]
    assert query["Condition"] == DISPATCH_CONDITION
    assert [statement for statement in statements if "Condition" in statement] == [query]


def test_worker_role_is_least_privilege(cfn: dict[str, Any]) -> None:
    granted, statements, managed = _granted(cfn, WORKER_ID)
    # No AWSLambdaSQSQueueExecutionRole: it grants the SQS actions on every queue (Resource "*").
    assert _managed_names(managed) == [BASIC_EXECUTION_ROLE]
    assert granted == WORKER_GRANTS
    conditioned = {
        json.dumps(s["Condition"], sort_keys=True): as_list(s["Action"]) for s in statements if "Condition" in s
    }
    assert conditioned == {
        json.dumps(WORKER_STATE_CONDITION, sort_keys=True): ["dynamodb:Query", "dynamodb:UpdateItem"],
        json.dumps(WORKER_CLAIM_CONDITION, sort_keys=True): ["dynamodb:UpdateItem"],
    }
    dynamodb = [s for s in statements if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))]
    assert all("Condition" in statement for statement in dynamodb)
    (key_grant,) = key_statements(cfn, WORKER_ROLE_ARN)
    assert as_list(key_grant["Action"]) == WORKER_KEY_ACTIONS and key_grant["Resource"] == "*"
    roles = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert "AWSLambdaSQSQueueExecutionRole" not in json.dumps(roles)


def test_decrypt_requires_exactly_the_account_context_key(cfn: dict[str, Any]) -> None:
    condition = _decrypt_condition(cfn)
    account_context = set(hosted_vault.context("any-account"))  # what the worker decrypts with
    assert account_context == {"linkup-sync-account"}
    assert _context_keys_allowed(condition, account_context)
    assert not _context_keys_allowed(condition, set())  # no context: refused
    assert not _context_keys_allowed(condition, {"other"})
    assert not _context_keys_allowed(condition, {"linkup-sync-account", "other"})


def test_the_scheduler_may_only_invoke_the_dispatcher(cfn: dict[str, Any]) -> None:
    assert schedule_role_statements(cfn, "DispatchFunctionScheduleRole") == invoke_only(DISPATCH_ID)


def test_no_resource_policy_opens_the_stack(cfn: dict[str, Any]) -> None:
    types = {r["Type"] for r in cfn["Resources"].values()}
    assert not types & OPENING_RESOURCE_TYPES


def test_credentials_key(template: dict[str, Any]) -> None:
    key = template["Resources"][KEY_ID]
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")  # like the table
    properties = key["Properties"]
    assert (properties["KeySpec"], properties["KeyUsage"]) == ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")
    assert properties["EnableKeyRotation"] is True
    statements = properties["KeyPolicy"]["Statement"]
    assert {json.dumps(s["Principal"]) for s in statements} == {
        json.dumps({"AWS": ACCOUNT_ROOT}),
        json.dumps({"AWS": WORKER_ROLE_ARN}),
    }
    root = key_statements(template, ACCOUNT_ROOT)
    assert [s.get("Condition") for s in root] == [None]
    # the account administers the key and encrypts through IAM (the operator's accounts add) ...
    for action in ("kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:EnableKeyRotation", "kms:Encrypt"):
        assert allowed(root, Call(action)), action
    # ... but no IAM policy in the account (kms:Decrypt on "*" included) opens a ciphertext
    context = {"kms:EncryptionContextKeys": {"linkup-sync-account"}}
    for action in ("kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:CreateGrant"):
        assert not allowed(root, Call(action, context)), action  # a grant would hand out Decrypt
    (worker,) = key_statements(template, WORKER_ROLE_ARN)
    assert allowed([worker], Call("kms:Decrypt", context)) and allowed([worker], Call("kms:Encrypt", context))
    assert not allowed([worker], Call("kms:Decrypt")) and not allowed([worker], Call("kms:ReEncryptFrom", context))
    alias = _properties(template, "CredentialsKeyAlias")
    assert alias == {"AliasName": {"Fn::Sub": "alias/${AWS::StackName}-credentials"}, "TargetKeyId": {"Ref": KEY_ID}}


# --------------------------------------------------------------------------- environment


def test_environment_variables(template: dict[str, Any], cfn: dict[str, Any]) -> None:
    assert _properties(template, DISPATCH_ID)["Environment"]["Variables"] == DISPATCH_ENVIRONMENT
    assert _properties(template, WORKER_ID)["Environment"]["Variables"] == WORKER_ENVIRONMENT
    assert _properties(cfn, WORKER_ID)["Environment"]["Variables"] == WORKER_ENVIRONMENT
    # {region} is substituted by the code, never by CloudFormation.
    assert cfn["Parameters"]["LinkUpApiUrl"]["Default"] == "https://api-{region}.libreview.io"


def test_the_worker_environment_is_what_the_worker_reads() -> None:
    """Every stack setting the worker takes from its environment is set, and nothing it ignores."""
    names = {name for name in WORKER_ENVIRONMENT if not name.startswith("POWERTOOLS_")}
    assert names == {*STACK_SETTING_KEYS, "CREDENTIALS_KEY_ARN"}


def _load_handler(folder: str) -> Any:
    """functions/<folder>/app.py under its own module name (all three handlers are called app)."""
    spec = importlib.util.spec_from_file_location(f"hosted_{folder}_app", REPO_ROOT / "functions" / folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def aws_region(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in (("AWS_DEFAULT_REGION", REGION), ("AWS_ACCESS_KEY_ID", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    yield


def test_the_handlers_accept_the_template_environment(monkeypatch: pytest.MonkeyPatch, aws_region: None) -> None:
    resources = {TABLE_ID: "t", QUEUE_ID: "https://sqs.us-east-1.amazonaws.com/1/q", "CredentialsKey.Arn": "arn:k"}
    dispatch_env = function_environment(resources, path=HOSTED_TEMPLATE_PATH, function_id=DISPATCH_ID)
    for name, value in dispatch_env.items():
        monkeypatch.setenv(name, value)
    dispatcher = _load_handler("dispatch").dispatcher()
    assert (dispatcher.registry.table_name, dispatcher.queue.url) == ("t", resources[QUEUE_ID])

    worker_env = function_environment(resources, path=HOSTED_TEMPLATE_PATH, function_id=WORKER_ID)
    worker = Worker.from_env(worker_env)
    assert worker.vault.key_id == "arn:k"
    assert worker.stack_env["LINK_UP_API_URL"] == "https://api-{region}.libreview.io"


# --------------------------------------------------------------------------- parameters and outputs


def test_every_parameter_is_used_described_and_grouped(template: dict[str, Any]) -> None:
    text = json.dumps(template["Resources"]) + json.dumps(template.get("Conditions", {}))
    interface = template["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [name for group in interface["ParameterGroups"] for name in group["Parameters"]]
    assert sorted(grouped) == sorted(template["Parameters"])  # each parameter in one group
    for name, parameter in template["Parameters"].items():
        assert parameter.get("Description"), name
        assert interface["ParameterLabels"][name]["default"], name
        assert f'{{"Ref": "{name}"}}' in text or f"${{{name}}}" in text, f"{name} is unused"


def test_string_parameters_default_as_in_the_personal_stack(template: dict[str, Any], personal: dict[str, Any]) -> None:
    for name in ("LinkUpAutoAcceptTerms", "LinkUpApiUrl", "NightscoutSensorStart", "NightscoutAnnounce", "LogLevel"):
        assert template["Parameters"][name]["Default"] == personal["Parameters"][name]["Default"], name
        assert isinstance(template["Parameters"][name]["Default"], str), name
    for name in ("PowertoolsLayerArn", "LogRetentionDays"):
        hosted, own = (dict(t["Parameters"][name], Description=None) for t in (template, personal))
        assert hosted == own, name


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["StateTableName"]["Value"] == {"Ref": TABLE_ID}
    assert outputs["CredentialsKeyArn"]["Value"] == KEY_ARN
    assert outputs["SyncQueueUrl"]["Value"] == {"Ref": QUEUE_ID}
    assert outputs["OperatorTopicArn"]["Value"] == {"Ref": "OperatorTopic"}
    assert outputs["AddAccountCommand"]["Value"] == {
        "Fn::Sub": "linkup-sync accounts add --table ${StateTable} --key-id ${CredentialsKey.Arn} < account.json"
    }


# --------------------------------------------------------------------------- moto: the stack's data plane


def _resolve_sub(value: Any) -> Any:
    """The few pseudo parameters the key policy names, as moto's account sees them."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return str(value["Fn::Sub"]).replace("${AWS::Partition}", "aws").replace("${AWS::AccountId}", MOTO_ACCOUNT)
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:  # the worker's role
        return f"arn:aws:iam::{MOTO_ACCOUNT}:role/{value['Fn::GetAtt'][0]}"
    if isinstance(value, dict):
        return {k: _resolve_sub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_sub(v) for v in value]
    return value


class _Calls:
    """botocore 'before-call': the IAM action of every call, with the table, queue or key it names."""

    def __init__(self) -> None:
        self.actions: set[str] = set()
        self.targets: set[str] = set()
        self.context_keys: list[set[str]] = []

    def __call__(self, model: Any = None, params: Any = None, **_: Any) -> None:
        if model is None:
            return
        self.actions.add(f"{model.service_model.endpoint_prefix}:{IAM_ACTION_OF.get(model.name, model.name)}")
        body = params.get("body", {}) if isinstance(params, dict) else {}
        text = body.decode() if isinstance(body, bytes) else json.dumps(body)
        self.targets.update(re.findall(r'"(?:TableName|KeyId)": ?"([^"]+)"', text))
        if isinstance(body, dict) and "QueueUrl" in body:  # SQS may speak the query protocol
            self.targets.add(str(body["QueueUrl"]))
        self.targets.update(re.findall(r'"QueueUrl": ?"([^"]+)"', text))
        if "EncryptionContext" in text:
            self.context_keys.append(set(json.loads(text)["EncryptionContext"]))


def _recorded(service: str, calls: _Calls) -> Any:
    client = boto3.client(service, region_name=REGION)  # type: ignore[call-overload]
    client.meta.events.register("before-call", calls)
    return client


@mock_aws
def test_the_table_built_from_hosted_yaml(aws_region: None) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    name = create_state_table(client, "hosted-state", HOSTED_TEMPLATE_PATH)
    table = client.describe_table(TableName=name)["Table"]
    properties = load_template(HOSTED_TEMPLATE_PATH)["Resources"][TABLE_ID]["Properties"]
    assert table["KeySchema"] == properties["KeySchema"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl == {"AttributeName": "expires_at", "TimeToLiveStatus": "ENABLED"}


@mock_aws
def test_dispatch_and_claim_use_only_what_their_roles_grant(aws_region: None, cfn: dict[str, Any]) -> None:
    """The dispatcher and the worker's registry and vault steps against moto resources built from
    hosted.yaml: every AWS action they perform is granted to their role, on the stack's own resources,
    and the worker decrypts with a context its role's condition allows."""
    from linkup_sync.hosted.accounts import check_account, seal_account
    from linkup_sync.hosted.dispatch import Dispatcher, SqsQueue
    from linkup_sync.hosted.registry import Registry
    from linkup_sync.hosted.schedule import offset
    from linkup_sync.hosted.vault import Vault

    table = create_state_table(boto3.client("dynamodb", region_name=REGION), "hosted-state", HOSTED_TEMPLATE_PATH)
    sqs = boto3.client("sqs", region_name=REGION)
    dlq = _properties(cfn, DLQ_ID)
    dlq_url = sqs.create_queue(
        QueueName="dlq", Attributes={"MessageRetentionPeriod": str(dlq["MessageRetentionPeriod"])}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = _properties(cfn, QUEUE_ID)
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(queue["RedrivePolicy"]["maxReceiveCount"])}
    queue_url = sqs.create_queue(
        QueueName="sync",
        Attributes={
            "VisibilityTimeout": str(queue["VisibilityTimeout"]),
            "MessageRetentionPeriod": str(queue["MessageRetentionPeriod"]),
            "SqsManagedSseEnabled": "true",
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    key_policy = _resolve_sub(_properties(cfn, KEY_ID)["KeyPolicy"])
    key_arn = boto3.client("kms", region_name=REGION).create_key(Policy=json.dumps(key_policy))["KeyMetadata"]["Arn"]

    # The operator adds an account (their own permissions, not a function's).
    new = check_account(
        {
            "LINK_UP_USERNAME": "fiona.follower@example.invalid",
            "LINK_UP_PASSWORD": "correct horse battery staple",
            "NIGHTSCOUT_URL": "https://fiona.nightscout.example",
            "NIGHTSCOUT_API_TOKEN": "fiona-token-0123456789",
        }
    )
    Registry(table, client=boto3.client("dynamodb", region_name=REGION)).put(seal_account(new, Vault(key_arn)))
    minute = 29_000_000 - 29_000_000 % new.interval + offset(new.id, new.interval)

    dispatch_calls, dispatch_conditions = _Calls(), Recorder()
    dispatcher = Dispatcher(
        Registry(table, client=dispatch_conditions.attach(_recorded("dynamodb", dispatch_calls))),
        SqsQueue(queue_url, client=_recorded("sqs", dispatch_calls)),
    )
    assert dispatcher.dispatch(minute).sent == 1
    assert dispatch_calls.actions <= set(DISPATCH_GRANTS), dispatch_calls.actions
    assert dispatch_calls.targets == {table, queue_url}

    assert dispatch_conditions.calls and dispatch_conditions.denied(dispatch_policy(cfn)) == []

    # The worker: the claim, the account's credentials, and a whole run's state and incidents, sealed.
    worker_calls, worker_conditions = _Calls(), Recorder()
    dynamodb = worker_conditions.attach(_recorded("dynamodb", worker_calls))
    kms = worker_conditions.attach(_recorded("kms", worker_calls))
    registry = Registry(table, client=dynamodb)
    account = registry.claim(new.id, minute)
    assert account is not None
    vault = Vault(key_arn, client=kms)
    assert (
        json.loads(vault.open(account.id, account.ciphertext))["NIGHTSCOUT_URL"] == "https://fiona.nightscout.example"
    )
    run_the_worker_steps(table, dynamodb, vault, account)
    registry.release(account, minute, None)
    assert worker_calls.actions <= set(WORKER_GRANTS) | set(WORKER_KEY_ACTIONS), worker_calls.actions
    assert {"kms:Encrypt", "kms:Decrypt", "dynamodb:Query", "dynamodb:UpdateItem"} <= worker_calls.actions
    assert worker_calls.targets <= {table, key_arn}
    condition = _decrypt_condition(cfn)
    assert worker_calls.context_keys and all(_context_keys_allowed(condition, k) for k in worker_calls.context_keys)
    assert worker_conditions.denied(worker_policy(cfn)) == []


def run_the_worker_steps(table: str, client: Any, vault: Any, account: Any) -> None:
    """What a run of the worker does to the table: its account's state (login lock, ticket, upload
    record, sealed), its incidents (open, tell, remind, close, the people's initials)."""
    from linkup_sync.hosted.registry import incidents_partition
    from linkup_sync.hosted.sealed_state import VaultSealer
    from linkup_sync.incidents.model import Incident
    from linkup_sync.model import Ticket
    from linkup_sync.state.dynamodb import DynamoDBStateStore
    from linkup_sync.state.incidents import DynamoDBIncidentStore
    from linkup_sync.state.model import AccountState, TargetState

    now = 1_800_000_000
    store = DynamoDBStateStore(table, client=client, clock=lambda: now, sealer=VaultSealer(vault))
    key = account.state_key
    assert store.acquire_login_lock(key, now, 60)
    ticket = Ticket(token="t", expires=now + 180 * 86400, user_id="u", account_id="a" * 64, region="eu")
    store.save_account(key, AccountState(ticket=ticket, creds_tag="h1:x"))
    store.record_upload(key, TargetState(target_id="p#site", jwt="jwt", jwt_exp=now + 3600), [now - 60])
    assert store.load(key).account.ticket == ticket
    incidents = DynamoDBIncidentStore(table, client=client, clock=lambda: now, pk=incidents_partition(account.id))
    incidents.load_incidents()
    incidents.remember_people({"abc": "F.F."})
    record = incidents.open_incident(Incident(kind="stale", scope="", title="t", what="w", todo="d"), now)
    assert record is not None and incidents.claim(record, "email_open", now)
    assert incidents.remind(record, now + 2 * 86400, now + 86400)
    assert incidents.close(record, now + 3 * 86400)


def _update(pk: str, expression: str, **extra: Any) -> dict[str, Any]:
    return {"TableName": "t", "Key": {"pk": {"S": pk}, "sk": {"S": "x"}}, "UpdateExpression": expression, **extra}


def _query(pk: str) -> dict[str, Any]:
    return {"TableName": "t", "KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": pk}}}


def test_calls_outside_the_grants_are_denied(cfn: dict[str, Any]) -> None:
    """Issue 21: the dispatcher reads only due partitions; the worker changes only its claim on a
    registry item, reads and writes only state and incidents; KMS only under an account's context."""
    worker, dispatch = worker_policy(cfn), dispatch_policy(cfn)
    claim = _update(
        "registry",
        "SET last_due = :due",
        ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(last_due) OR last_due < :due)",
        ReturnValues="ALL_OLD",
    )
    assert dynamodb_context("UpdateItem", claim).keys["dynamodb:Attributes"] == {"pk", "sk", "last_due"}
    assert allowed(worker, dynamodb_context("UpdateItem", claim))
    release = _update("registry", "REMOVE #due", ConditionExpression="#due = :due")
    release["ExpressionAttributeNames"] = {"#due": "last_due"}
    assert allowed(worker, dynamodb_context("UpdateItem", release))
    for forbidden in (
        _update("registry", "SET credentials = :c"),  # the ciphertext
        _update("registry", "SET last_due = :d, key_id = :k"),
        _update("registry", "SET #c = :c", ExpressionAttributeNames={"#c": "settings"}),
        _update("registry", "SET last_due = :d", ReturnValues="ALL_NEW"),
        _update("due#5#3", "SET sk = :s"),
    ):
        assert not allowed(worker, dynamodb_context("UpdateItem", forbidden)), forbidden
    assert allowed(worker, dynamodb_context("UpdateItem", _update("acct#0123", "SET ticket_expires = :t")))
    assert allowed(worker, dynamodb_context("UpdateItem", _update("incidents#0123", "SET closed_at = :t")))
    for pk in ("acct#0123", "incidents#0123"):
        assert allowed(worker, dynamodb_context("Query", _query(pk)))
    for pk in ("registry", "due#5#3"):
        assert not allowed(worker, dynamodb_context("Query", _query(pk))), pk

    assert allowed(dispatch, dynamodb_context("Query", _query("due#5#3")))
    for pk in ("registry", "acct#0123", "incidents#0123"):
        assert not allowed(dispatch, dynamodb_context("Query", _query(pk))), pk
    assert not allowed(dispatch, dynamodb_context("UpdateItem", claim))

    account = {"kms:EncryptionContextKeys": {"linkup-sync-account"}}
    assert allowed(worker, Call("kms:Decrypt", account)) and allowed(worker, Call("kms:Encrypt", account))
    assert not allowed(worker, Call("kms:Decrypt"))
    assert not allowed(worker, Call("kms:Decrypt", {"kms:EncryptionContextKeys": {"linkup-sync-account", "x"}}))
    assert not allowed(worker, Call("kms:ReEncryptFrom", account))
    assert not allowed(dispatch, Call("kms:Decrypt", account))
