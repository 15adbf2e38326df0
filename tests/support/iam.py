"""A small evaluator of the IAM statements hosted.yaml grants, for the calls the code really makes.

It decides Allow statements only (the templates use no Deny): an action matches Action (or misses
NotAction), and every condition holds for the request's condition keys, as IAM evaluates them:
- StringEquals / StringLike: the key must be present and equal / match one of the values;
- ...IfExists: an absent key passes;
- ForAllValues: every value of the key is among them (no value at all passes);
- ForAnyValue: at least one value of the key is among them (no value fails).
Resources are checked by the tests separately (the calls name only the stack's own table and key).

`dynamodb_context` and `kms_context` give a recorded call's condition keys the way DynamoDB and KMS
document them: dynamodb:LeadingKeys (the partition key value asked for), dynamodb:Attributes (the
top-level attribute names a request names, with the key attributes), dynamodb:ReturnValues,
dynamodb:Select, kms:EncryptionContextKeys.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.support.template import as_list, function_role_statements

KEY_ATTRIBUTES = ("pk", "sk")
_EXPRESSION_WORDS = {
    "SET",
    "REMOVE",
    "ADD",
    "DELETE",
    "AND",
    "OR",
    "NOT",
    "BETWEEN",
    "IN",
    "if_not_exists",
    "list_append",
    "attribute_exists",
    "attribute_not_exists",
    "attribute_type",
    "begins_with",
    "contains",
    "size",
}
# a name at the start of a document path: not after ".", ":" (a value) or inside another word
_TOP_LEVEL_NAME = re.compile(r"(?<![\w.:#])(#?[A-Za-z_]\w*)")


@dataclass
class Call:
    """One request as IAM sees it: its action and its condition keys (each a set of values)."""

    action: str
    keys: dict[str, set[str]] = field(default_factory=dict)

    def __str__(self) -> str:
        shown = {key: sorted(values) for key, values in sorted(self.keys.items())}
        return f"{self.action} {shown}"


def _matches(value: str, pattern: str, like: bool) -> bool:
    return fnmatch.fnmatchcase(value, pattern) if like else value == pattern


def _holds(operator: str, values: set[str] | None, wanted: list[str]) -> bool:
    qualifier, _, test = operator.rpartition(":")
    if_exists = test.endswith("IfExists")
    test = test.removesuffix("IfExists")
    if test not in ("StringEquals", "StringLike"):
        raise AssertionError(f"the evaluator does not know the condition operator {operator}")
    like = test == "StringLike"
    found = values or set()

    def one(value: str) -> bool:
        return any(_matches(value, pattern, like) for pattern in wanted)

    if qualifier == "ForAllValues":
        return all(one(value) for value in found)
    if qualifier == "ForAnyValue":
        return any(one(value) for value in found)
    if values is None:
        return if_exists
    return len(found) == 1 and one(next(iter(found)))


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(fnmatch.fnmatchcase(action, str(p)) for p in as_list(statement["NotAction"]))
    return any(fnmatch.fnmatchcase(action, str(p)) for p in as_list(statement["Action"]))


def statement_allows(statement: Mapping[str, Any], call: Call) -> bool:
    if statement.get("Effect") != "Allow" or not _action_matches(statement, call.action):
        return False
    for operator, block in statement.get("Condition", {}).items():
        for key, wanted in block.items():
            if not _holds(operator, call.keys.get(key), [str(v) for v in as_list(wanted)]):
                return False
    return True


def allowed(statements: Iterable[Mapping[str, Any]], call: Call) -> bool:
    return any(statement_allows(statement, call) for statement in statements)


def _names(expression: str | None, aliases: Mapping[str, str]) -> set[str]:
    found: set[str] = set()
    for token in _TOP_LEVEL_NAME.findall(expression or ""):
        if token in _EXPRESSION_WORDS:
            continue
        found.add(aliases[token] if token.startswith("#") else token)
    return found


def dynamodb_context(operation: str, params: Mapping[str, Any]) -> Call:
    """The condition keys of one DynamoDB request, from its parameters (as botocore sends them)."""
    keys: dict[str, set[str]] = {}
    aliases: Mapping[str, str] = params.get("ExpressionAttributeNames", {})
    if operation == "Query":
        condition = str(params.get("KeyConditionExpression", ""))
        placeholder = re.match(r"\s*pk\s*=\s*(:\w+)", condition)
        assert placeholder, condition
        keys["dynamodb:LeadingKeys"] = {params["ExpressionAttributeValues"][placeholder.group(1)]["S"]}
        projected = _names(params.get("ProjectionExpression"), aliases)
        if projected:
            keys["dynamodb:Attributes"] = projected | set(KEY_ATTRIBUTES)
    elif operation in ("UpdateItem", "GetItem", "DeleteItem"):
        keys["dynamodb:LeadingKeys"] = {params["Key"]["pk"]["S"]}
        named = _names(params.get("UpdateExpression"), aliases) | _names(params.get("ConditionExpression"), aliases)
        named |= _names(params.get("ProjectionExpression"), aliases)
        keys["dynamodb:Attributes"] = named | set(KEY_ATTRIBUTES)
    else:
        raise AssertionError(f"the evaluator does not know DynamoDB's {operation}")
    for name, key in (("ReturnValues", "dynamodb:ReturnValues"), ("Select", "dynamodb:Select")):
        if name in params:
            keys[key] = {str(params[name])}
    return Call(action=f"dynamodb:{operation}", keys=keys)


def kms_context(operation: str, params: Mapping[str, Any]) -> Call:
    context = params.get("EncryptionContext") or {}
    return Call(action=f"kms:{operation}", keys={"kms:EncryptionContextKeys": set(context)} if context else {})


class Recorder:
    """botocore 'before-parameter-build' on a client: the condition keys of every call it makes."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-parameter-build", self._seen)
        return client

    def _seen(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.endpoint_prefix
        if service == "dynamodb":
            self.calls.append(dynamodb_context(model.name, params))
        elif service == "kms":
            self.calls.append(kms_context(model.name, params))
        else:
            raise AssertionError(f"the evaluator does not know {service}")

    def denied(self, statements: Iterable[Mapping[str, Any]]) -> list[str]:
        statements = list(statements)
        return [str(call) for call in self.calls if not allowed(statements, call)]


# --- hosted.yaml's grants (the transformed template) ------------------------------------------------

WORKER_ROLE_ARN = {"Fn::GetAtt": ["SyncWorkerFunctionRole", "Arn"]}


def key_statements(cfn: Mapping[str, Any], principal: Any) -> list[dict[str, Any]]:
    """The statements of CredentialsKey's key policy that name `principal`."""
    statements = cfn["Resources"]["CredentialsKey"]["Properties"]["KeyPolicy"]["Statement"]
    return [s for s in statements if s["Principal"] == {"AWS": principal}]


def worker_policy(cfn: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What the worker may do: its role's statements and the key policy's statements naming its role."""
    statements, _ = function_role_statements(cfn, "SyncWorkerFunction")
    return [*statements, *key_statements(cfn, WORKER_ROLE_ARN)]


def dispatch_policy(cfn: Mapping[str, Any]) -> list[dict[str, Any]]:
    statements, _ = function_role_statements(cfn, "DispatchFunction")
    return statements
