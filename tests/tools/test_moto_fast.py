"""tools/moto_fast.py changes what moto costs, never what it answers.

Each scenario runs twice on a fresh in-process moto, once as moto is and once inside fast_dynamodb(),
and both runs must see the same answers and errors and leave the same items behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from tools.moto_fast import fast_dynamodb

TABLE = "t"
Scenario = Callable[[Any], list[Any]]


@pytest.fixture(autouse=True)
def _aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    yield


def make_table(client: Any) -> None:
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def everything(client: Any) -> list[dict[str, Any]]:
    """Every item, in a fixed order (a Scan: moto's own listing, untouched by the patches)."""
    items = client.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return sorted(items, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))


def outcome(call: Callable[[], Any]) -> Any:
    """The answer without its request id, or the error code and message."""
    try:
        reply = call()
    except ClientError as exc:
        return ("error", exc.response["Error"]["Code"], exc.response["Error"].get("Message"))
    reply.pop("ResponseMetadata", None)
    return reply


def compare(scenario: Scenario) -> list[Any]:
    results = []
    for fast in (False, True):
        with mock_aws():
            client = boto3.client("dynamodb")
            make_table(client)
            if fast:
                with fast_dynamodb():
                    seen = scenario(client)
            else:
                seen = scenario(client)
            results.append([*seen, everything(client)])
    plain, patched = results
    assert patched == plain
    return plain


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


EVERY_TYPE: dict[str, Any] = {
    "s": {"S": "text with ünïcode"},
    "empty": {"S": ""},
    "n": {"N": "-12.50"},
    "b": {"B": b"\x00\xffbinary"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"\x01", b"\x02\x03"]},
    "m": {"M": {"inner": {"S": "v"}, "deeper": {"M": {"flag": {"BOOL": False}, "raw": {"B": b"zz"}}}}},
    "l": {"L": [{"N": "3"}, {"NULL": True}, {"L": [{"B": b"in a list"}, {"SS": ["x"]}]}, {"M": {}}]},
    "yes": {"BOOL": True},
    "nothing": {"NULL": True},
}


def fill(client: Any) -> None:
    for pk in ("a", "b", "c"):
        for i in range(6):
            item = {**key(pk, f"item#{i}"), "i": {"N": str(i)}, "g": {"S": f"g{i % 2}"}, **EVERY_TYPE}
            client.put_item(TableName=TABLE, Item=item)


def test_queries_answer_the_same_on_every_path() -> None:
    def scenario(client: Any) -> list[Any]:
        fill(client)

        def query(**params: Any) -> Any:
            return outcome(lambda: client.query(TableName=TABLE, **params))

        def pages(**params: Any) -> list[Any]:
            found, start = [], None
            while True:
                more: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
                page = client.query(TableName=TABLE, Limit=2, **params, **more)
                found.append(page["Items"])
                start = page.get("LastEvaluatedKey")
                if not start:
                    return found

        pk = {":pk": {"S": "b"}}
        return [
            query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues=pk, ConsistentRead=True),
            query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "none"}}),
            query(
                KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                ExpressionAttributeValues={**pk, ":p": {"S": "item#"}},
                ScanIndexForward=False,
            ),
            query(
                KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={**pk, ":lo": {"S": "item#1"}, ":hi": {"S": "item#4"}, ":two": {"N": "2"}},
                FilterExpression="i > :two",
                ProjectionExpression="pk, sk, m.deeper, l[2]",
            ),
            query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues=pk, Select="COUNT"),
            query(IndexName="by-g", KeyConditionExpression="g = :g", ExpressionAttributeValues={":g": {"S": "g1"}}),
            query(KeyConditionExpression="sk = :pk", ExpressionAttributeValues=pk),  # not the key: an error
            pages(KeyConditionExpression="pk = :pk", ExpressionAttributeValues=pk),
            outcome(lambda: client.get_item(TableName=TABLE, Key=key("c", "item#5"))),
        ]

    seen = compare(scenario)
    assert [item["sk"]["S"] for item in seen[0]["Items"]] == [f"item#{i}" for i in range(6)]
    assert seen[0]["Items"][0]["b"] == {"B": b"\x00\xffbinary"} and seen[1]["Items"] == []
    assert len(seen[7]) == 3  # the Limit made three pages


def test_transactions_write_all_or_nothing_on_every_path() -> None:
    def scenario(client: Any) -> list[Any]:
        client.put_item(TableName=TABLE, Item={**key("a", "1"), "v": {"N": "1"}, **EVERY_TYPE})
        client.put_item(TableName=TABLE, Item={**key("a", "2"), "v": {"N": "2"}})

        def transact(*writes: dict[str, Any]) -> Any:
            return outcome(lambda: client.transact_write_items(TransactItems=list(writes)))

        new = {"Put": {"TableName": TABLE, "Item": {**key("a", "3"), "v": {"N": "3"}}}}
        update = {
            "Update": {
                "TableName": TABLE,
                "Key": key("a", "1"),
                "UpdateExpression": "SET v = :v, m.#inner = :s REMOVE b",
                "ExpressionAttributeNames": {"#inner": "inner"},
                "ExpressionAttributeValues": {":v": {"N": "10"}, ":s": {"S": "changed"}},
            }
        }
        delete = {"Delete": {"TableName": TABLE, "Key": key("a", "2")}}
        refused = {
            "ConditionCheck": {
                "TableName": TABLE,
                "Key": key("a", "2"),
                "ConditionExpression": "v = :nine",
                "ExpressionAttributeValues": {":nine": {"N": "9"}},
            }
        }
        must_be_new = {
            "Put": {
                "TableName": TABLE,
                "Item": {**key("a", "1"), "v": {"N": "0"}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        answers = [
            transact(new, update, refused),  # cancelled after two writes: both undone
            everything(client),
            transact(update, new, must_be_new),  # twice the same key: refused before any write
            everything(client),
            transact(new, delete),
            transact(must_be_new),
            transact(update),
        ]
        return answers

    seen = compare(scenario)
    assert seen[0][0] == "error" and seen[0][1] == "TransactionCanceledException"
    assert [item["sk"]["S"] for item in seen[1]] == ["1", "2"] and seen[1][0]["v"] == {"N": "1"}
    assert seen[1][0]["b"] == EVERY_TYPE["b"] and seen[2][0] == "error" and seen[3] == seen[1]
    final = seen[-1]
    assert [item["sk"]["S"] for item in final] == ["1", "3"] and final[0]["v"] == {"N": "10"}
    assert "b" not in final[0] and final[0]["m"]["M"]["inner"] == {"S": "changed"}


def test_updates_with_a_repeated_expression_apply_their_own_values() -> None:
    def scenario(client: Any) -> list[Any]:
        expression = "SET #n = if_not_exists(#n, :zero) + :one, tag = :tag"
        replies = []
        for i, sk in enumerate(("x", "y", "x", "x")):

            def update(sk: str = sk, i: int = i) -> Any:
                return client.update_item(
                    TableName=TABLE,
                    Key=key("u", sk),
                    UpdateExpression=expression,
                    ExpressionAttributeNames={"#n": "count"},
                    ExpressionAttributeValues={":zero": {"N": "0"}, ":one": {"N": "1"}, ":tag": {"S": f"t{i}"}},
                    ReturnValues="ALL_NEW",
                )

            replies.append(outcome(update))
        replies.append(  # a broken expression is still an error, every time
            outcome(lambda: client.update_item(TableName=TABLE, Key=key("u", "x"), UpdateExpression="SET = :v"))
        )
        return replies

    seen = compare(scenario)
    assert [r["Attributes"]["count"]["N"] for r in seen[:4]] == ["1", "1", "2", "3"]
    assert seen[3]["Attributes"]["tag"] == {"S": "t3"} and seen[4][0] == "error"


def test_moto_is_itself_again_after_the_block() -> None:
    from moto.core.serialize import BaseJSONSerializer
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    def current() -> list[Any]:
        return [
            Table.query,
            Table.all_items,
            models.DynamoDBBackend.transact_write_items,
            models.__dict__["copy"],
            BaseJSONSerializer._serialize_type_structure,
            UpdateExpressionParser.__dict__["make"],
        ]

    before = current()
    with fast_dynamodb():
        during = current()
    assert current() == before
    assert all(a is not b for a, b in zip(before, during, strict=True))
