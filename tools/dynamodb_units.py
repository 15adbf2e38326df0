"""DynamoDB request units of every call a boto3 client makes, by DynamoDB's own rules, against moto.

moto's ConsumedCapacity is a constant (1.0 for PutItem, Query, Scan and DeleteItem, 0.5 for GetItem,
nothing for UpdateItem) whatever the item size, so it cannot price a workload. Here the units come
from item sizes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
CapacityUnitCalculations.html; sizes by tools.bench.dynamodb_item_size: attribute names + values):

- GetItem: the item's size in 4 KB units, at least one; half for an eventually consistent read.
- Query and Scan: the sum of the sizes of the items read (whole items: a projection does not lower
  the units) per page, rounded up to 4 KB, at least one unit; half for eventually consistent.
- PutItem, UpdateItem, DeleteItem: the larger of the item before and after, in 1 KB units, at least
  one; a write whose condition fails costs the same (the item as it stands).
- TransactWriteItems: twice the write units of each item; BatchWriteItem: each item as a write.

The item as it was before a write and as it is after are read from moto's own table (in this
process), not through another API call, so metering adds no request to the workload it measures.
"""

from __future__ import annotations

import base64
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tools.bench import dynamodb_item_size

READ_UNIT_BYTES = 4096
WRITE_UNIT_BYTES = 1024
WRITES = ("PutItem", "UpdateItem", "DeleteItem")


@dataclass
class Usage:
    calls: int = 0
    read_units: float = 0.0
    write_units: float = 0.0

    def add(self, other: Usage) -> None:
        self.calls += other.calls
        self.read_units += other.read_units
        self.write_units += other.write_units


def read_units(size: int, *, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def write_units(size: int) -> float:
    return float(max(1, math.ceil(size / WRITE_UNIT_BYTES)))


def stored_item_size(item: Any) -> int:
    """The size of an item as moto stores it (its attributes are moto DynamoTypes)."""
    return dynamodb_item_size({name: _wire(value) for name, value in item.attrs.items()})


def _wire(value: Any) -> dict[str, Any]:
    """A moto DynamoType as the wire form tools.bench sizes (binary as bytes, not base64 text)."""
    kind, raw = value.type, value.value
    if kind == "M":
        return {"M": {name: _wire(v) for name, v in raw.items()}}
    if kind == "L":
        return {"L": [_wire(v) for v in raw]}
    if kind == "B":
        return {"B": _binary(raw)}
    if kind == "BS":
        return {"BS": [_binary(v) for v in raw]}
    return {kind: raw}


def _binary(raw: Any) -> bytes:
    return raw if isinstance(raw, bytes) else base64.b64decode(raw)


def label(operation: str, key: dict[str, Any]) -> str:
    """Which part of the hosted stack a call belongs to, from its operation and partition."""
    pk = str(key.get("pk", {}).get("S", ""))
    sk = str(key.get("sk", {}).get("S", ""))
    if pk.startswith("due#"):
        return "dispatcher: due lists (Query)"
    if pk == "registry":
        return "worker: claim (registry UpdateItem)" if operation == "UpdateItem" else f"registry {operation}"
    if pk.startswith("incidents#"):
        return f"worker: incidents ({operation})"
    if pk.startswith("acct#"):
        if operation == "Query":
            return "worker: state load (Query)"
        if sk.startswith("target#"):
            return "worker: upload record (target UpdateItem)"
        if sk == "incidents":
            return f"worker: incident marker ({operation})"
        return f"worker: account state ({operation}: login lock, ticket)"
    return f"{operation} {pk.split('#', 1)[0]}".strip()


@dataclass
class DynamoDBMeter:
    """botocore hooks on a DynamoDB client: units and calls by label, and the due-list reads by minute."""

    clock: Callable[[], float]
    region: str = "us-east-1"
    phase: str = "setup"
    usage: dict[tuple[str, str], Usage] = field(default_factory=dict)
    # (epoch minute, due partition) -> bytes read, so shards' reads of one partition can be summed
    due_reads: dict[tuple[int, str], int] = field(default_factory=dict)
    per_thread: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    # --- moto's table -----------------------------------------------------------------------------

    def _table(self, name: str) -> Any:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[DEFAULT_ACCOUNT_ID][self.region].get_table(name)

    def stored_size(self, table: str, key: dict[str, Any]) -> int:
        """The size of the item stored under `key` now (0 when there is none)."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        found = self._table(table).get_item(DynamoType(key["pk"]), DynamoType(key["sk"]) if "sk" in key else None)
        return 0 if found is None else stored_item_size(found)

    def table_items(self, table: str) -> list[Any]:
        """Every item moto holds in the table (for the storage figure)."""
        return list(self._table(table).all_items())

    # --- the hooks ----------------------------------------------------------------------------------

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        operation = model.name
        if operation in WRITES:
            context["meter_before"] = self.stored_size(params["TableName"], params.get("Key") or _key(params["Item"]))
        elif operation == "TransactWriteItems":
            context["meter_before"] = [self._transact_size(entry) for entry in params["TransactItems"]]
        context["meter_params"] = params

    def _transact_size(self, entry: dict[str, Any]) -> int:
        ((_, spec),) = entry.items()
        key = spec.get("Key") or _key(spec.get("Item", {}))
        return self.stored_size(spec["TableName"], key) if key else 0

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        params = context.get("meter_params")
        if params is None:
            return
        operation = model.name
        used = Usage(calls=1)
        key: dict[str, Any] = {}
        if operation in WRITES:
            key = params.get("Key") or _key(params["Item"])
            after = self.stored_size(params["TableName"], key)
            used.write_units = write_units(max(int(context.get("meter_before", 0)), after))
        elif operation == "GetItem":
            key = params["Key"]
            used.read_units = read_units(
                self.stored_size(params["TableName"], key), consistent=bool(params.get("ConsistentRead"))
            )
        elif operation in ("Query", "Scan"):
            key = {"pk": params.get("ExpressionAttributeValues", {}).get(":pk", {})}
            size = sum(self._full_size(params["TableName"], item) for item in parsed.get("Items", []))
            used.read_units = read_units(size, consistent=bool(params.get("ConsistentRead")))
            pk = str(key["pk"].get("S", ""))
            if pk.startswith("due#"):
                with self._lock:
                    slot = (int(self.clock() // 60), pk)
                    self.due_reads[slot] = self.due_reads.get(slot, 0) + size
        elif operation == "TransactWriteItems":
            sizes = context.get("meter_before", [])
            for entry, before in zip(params["TransactItems"], sizes, strict=True):
                ((_, spec),) = entry.items()
                entry_key = spec.get("Key") or _key(spec.get("Item", {}))
                after = self.stored_size(spec["TableName"], entry_key) if entry_key else 0
                used.write_units += 2 * write_units(max(before, after))
                key = key or entry_key
        elif operation == "BatchWriteItem":
            for requests in params["RequestItems"].values():
                used.write_units += len(requests)  # the operator's removals: items of a few hundred bytes
        counts = getattr(self.per_thread, "counts", None)
        if counts is not None:
            counts["dynamodb"] += 1
        name = label(operation, key)
        with self._lock:
            self.usage.setdefault((self.phase, name), Usage()).add(used)

    def _full_size(self, table: str, item: dict[str, Any]) -> int:
        """A returned item's full size: the stored one when a projection left only some attributes."""
        if "pk" in item and "sk" in item:
            stored = self.stored_size(table, {"pk": item["pk"], "sk": item["sk"]})
            if stored:
                return stored
        return dynamodb_item_size(item)


def _key(item: dict[str, Any]) -> dict[str, Any]:
    return {name: item[name] for name in ("pk", "sk") if name in item}
