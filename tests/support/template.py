"""Helpers that read template.yaml (or hosted.yaml) so tests follow the deployed configuration.

- ``load_template()``: template.yaml as a dict, short-form tags (!Ref, !Sub, !GetAtt, ...)
  turned into their long form ({"Ref": ...}, {"Fn::Sub": ...}, {"Fn::GetAtt": [res, attr]}).
- ``transformed_template()``: the CloudFormation template the SAM transform produces, offline
  (no AWS account, no network).
- ``function_environment()``: the environment variables SyncFunction gets.
- ``create_state_table(client)``: the state table created in moto from the template's schema.
- ``function_role_statements(cfn, function_id)``: every IAM statement and managed policy of a function's role.

Each takes ``path`` (default template.yaml); pass HOSTED_TEMPLATE_PATH for the hosted stack.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
HOSTED_TEMPLATE_PATH = REPO_ROOT / "hosted.yaml"

FUNCTION_ID = "SyncFunction"
LAYER_ID = "LinkupSyncLayer"
TABLE_ID = "StateTable"
SECRET_ID = "CredentialsSecret"
LOG_GROUP_ID = "SyncLogGroup"
SCHEDULE_EVENT_ID = "Schedule"

DEFAULT_TABLE_NAME = "linkup-sync-state"
# Region the offline SAM transform pretends to run in (it only shapes ARNs/partition).
TRANSFORM_REGION = "us-east-1"


@functools.cache
def _load(path: Path) -> dict[str, Any]:
    from tools.local_stack import read_template  # the one CloudFormation-aware YAML reader

    return read_template(path)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """template.yaml as a dict with intrinsic functions in long form (a fresh copy)."""
    return copy.deepcopy(_load(path))


def _local_uris_to_s3(template: dict[str, Any]) -> None:
    """Replace local CodeUri/ContentUri paths the way `sam validate` does.

    The translator only accepts S3 locations; `sam package`/`sam deploy` upload the folders.
    """
    uri_property = {
        "AWS::Serverless::Function": "CodeUri",
        "AWS::Serverless::LayerVersion": "ContentUri",
    }
    for resource in template.get("Resources", {}).values():
        prop = uri_property.get(resource.get("Type", ""))
        if prop is None:
            continue
        properties = resource.setdefault("Properties", {})
        if isinstance(properties.get(prop), str) and not properties[prop].startswith("s3://"):
            properties[prop] = f"s3://linkup-sync-artifacts/{prop.lower()}"


class _OfflineSession:
    """What the Translator reads from a boto3 Session: only ``region_name``.

    A real boto3 Session would read AWS_PROFILE and fail when that profile does not exist.
    """

    def __init__(self, region_name: str) -> None:
        self.region_name = region_name


@functools.cache
def _transform(path: Path, parameter_items: tuple[tuple[str, str], ...], region: str) -> dict[str, Any]:
    from samtranslator.parser.parser import Parser
    from samtranslator.plugins.application.serverless_app_plugin import ServerlessAppPlugin
    from samtranslator.translator.translator import Translator

    def no_sar_client() -> Any:
        raise AssertionError("the offline SAM transform must not call the Serverless Application Repository")

    template = load_template(path)
    _local_uris_to_s3(template)
    parameters: dict[str, Any] = dict(parameter_items)
    # samtranslator.translator.transform.transform() takes its region from the ambient boto3
    # configuration and fails without one; the Translator accepts an explicit session instead.
    translator = Translator(
        managed_policy_map=None,
        sam_parser=Parser(),
        plugins=[ServerlessAppPlugin(parameters=parameters, sar_client_creator=no_sar_client)],
        boto_session=_OfflineSession(region),
    )
    # The ManagedPolicyLoader stand-in: the template names no managed policy by its bare name,
    # so the map of AWS managed policies (an IAM ListPolicies call) is never needed.
    result = translator.translate(template, parameters, get_managed_policy_map=dict)
    return cast(dict[str, Any], result)


def transformed_template(
    parameter_values: Mapping[str, str] | None = None, region: str = TRANSFORM_REGION, path: Path = TEMPLATE_PATH
) -> dict[str, Any]:
    """Run the SAM transform offline and return the CloudFormation template (a fresh copy).

    Parameters not given keep their template defaults (the translator fills them in).
    """
    items = tuple(sorted((parameter_values or {}).items()))
    return copy.deepcopy(_transform(path, items, region))


def function_environment(
    resources: Mapping[str, str] | None = None,
    parameters: Mapping[str, str] | None = None,
    *,
    path: Path = TEMPLATE_PATH,
    function_id: str = FUNCTION_ID,
) -> dict[str, str]:
    """Environment variables of a function (SyncFunction by default), as the deployed function gets them.

    Literal values are kept; ``Ref`` to a parameter gives ``parameters[name]`` or the
    parameter's default; ``Ref`` to a resource gives ``resources[logical_id]`` or the logical
    id itself (what `sam local` uses for resources it cannot resolve); ``Fn::GetAtt`` to a resource
    gives ``resources["Logical.Attribute"]`` or that string itself.
    """
    template = load_template(path)
    defaults = {
        name: "" if spec.get("Default") is None else str(spec["Default"])
        for name, spec in template.get("Parameters", {}).items()
    }
    defaults.update(parameters or {})
    resource_values = dict(resources or {})
    variables = template["Resources"][function_id]["Properties"]["Environment"]["Variables"]
    environment: dict[str, str] = {}
    for name, value in variables.items():
        if isinstance(value, dict) and set(value) == {"Ref"}:
            target = str(value["Ref"])
            if target in defaults:
                environment[name] = defaults[target]
            elif target in template["Resources"]:
                environment[name] = resource_values.get(target, target)
            else:
                raise ValueError(f"{name}: Ref to unknown {target!r}")
        elif isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
            if value["Fn::GetAtt"][0] not in template["Resources"]:
                raise ValueError(f"{name}: GetAtt of unknown {value['Fn::GetAtt'][0]!r}")
            attribute = ".".join(value["Fn::GetAtt"])
            environment[name] = resource_values.get(attribute, attribute)
        elif isinstance(value, str | int | float | bool):
            environment[name] = str(value).lower() if isinstance(value, bool) else str(value)
        else:
            raise ValueError(f"{name}: unsupported environment value {value!r}")
    return environment


def state_table_properties(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Properties of the StateTable resource in template.yaml (or ``path``)."""
    return cast(dict[str, Any], load_template(path)["Resources"][TABLE_ID]["Properties"])


def create_state_table(
    dynamodb_client: DynamoDBClient, table_name: str = DEFAULT_TABLE_NAME, path: Path = TEMPLATE_PATH
) -> str:
    """Create the state table (e.g. in moto) from the template's schema; return its name.

    The same code the demo and the benchmark use (tools/local_stack.py): KeySchema, AttributeDefinitions,
    BillingMode, indexes and the TTL attribute come from template.yaml (or ``path``), so schema drift
    breaks the tests.
    """
    from tools.local_stack import create_state_table as create

    return create(dynamodb_client, table_name, path)


def as_list(value: Any) -> list[Any]:
    """A policy element that may be one value or a list, as a list."""
    return value if isinstance(value, list) else [value]


def function_role_statements(
    cfn: Mapping[str, Any], function_id: str = FUNCTION_ID
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Every statement of every policy attached to a function's role (transformed template), and its
    managed policy ARNs; a separate AWS::IAM::Policy on the role is listed as "(attached <id>)"."""
    role_ref = cfn["Resources"][function_id]["Properties"]["Role"]
    assert set(role_ref) == {"Fn::GetAtt"}, role_ref
    role_id = role_ref["Fn::GetAtt"][0]
    role = cfn["Resources"][role_id]["Properties"]
    statements: list[dict[str, Any]] = []
    for policy in role.get("Policies", []):
        statements.extend(as_list(policy["PolicyDocument"]["Statement"]))
    managed = list(role.get("ManagedPolicyArns", []))
    for lid, resource in cfn["Resources"].items():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            roles = resource["Properties"].get("Roles", [])
            if {"Ref": role_id} in roles:
                document = resource["Properties"]["PolicyDocument"]
                statements.extend(as_list(document["Statement"]))
                managed.append(f"(attached {lid})")
    return statements, managed


# Resource types that would open a stack's table, secret, queue or functions to other principals.
OPENING_RESOURCE_TYPES = frozenset(
    {
        "AWS::SecretsManager::ResourcePolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::Lambda::Permission",
        "AWS::Lambda::Url",
        "AWS::IAM::Policy",
        "AWS::IAM::ManagedPolicy",
        "AWS::IAM::User",
        "AWS::IAM::AccessKey",
    }
)


def schedule_role_statements(cfn: dict[str, Any], role_id: str) -> list[Any]:
    """The statements of the role SAM makes for a ScheduleV2 event (asserting it has no managed policy)."""
    role = cfn["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    return [s for p in role["Policies"] for s in as_list(p["PolicyDocument"]["Statement"])]


def invoke_only(function_id: str) -> list[dict[str, Any]]:
    return [{"Action": "lambda:InvokeFunction", "Effect": "Allow", "Resource": {"Fn::GetAtt": [function_id, "Arn"]}}]
