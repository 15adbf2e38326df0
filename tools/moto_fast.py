"""moto at the cost of the items a request touches, for tests with thousands of accounts.

moto (5.x) does several things per request that cost as much as the whole table or queue, or repeat
work whose result cannot change, so a simulated hour of a thousand hosted accounts (registry, due
lists, state and incidents in one table; a minute's messages in one queue) spends most of its time
in them. Each is replaced here by the same work on the request's own items, or done once; everything
else, and what the answers say, is moto's own code.

- Query sorts every item of the table, then keeps those of the asked partition. The partition's items
  are at hand in moto's index (``Table.items[hash key]``): while a table Query runs, its listing of
  "all items" is that partition alone (per thread: the worker runs accounts side by side). Range
  conditions, filters, projection, ordering, pagination and the copies it returns stay moto's.
  Scans and index queries keep the full listing.
- TransactWriteItems deep-copies the whole table (once per item of the transaction) to roll back a
  cancelled one. Here it backs up the transaction's own items instead and puts them back when moto
  cancels; the table "copy" moto restores is then the table itself, so its own rollback changes nothing.
- Every DynamoDB answer goes through moto's generic response serializer, which looks up each of the
  ten members of every attribute value (S, N, B, ... BOOL) under several aliases: most of the cost of
  a Query or UpdateItem. moto's result already holds the attribute values in their wire form (binary
  as bytes), so they are written directly, with the same rules (binary in base64, strings as str,
  None members left out); a value with any other key goes the generic way.
  tests/tools/test_moto_fast.py compares both serializers on every attribute type.
- UpdateItem parses its UpdateExpression twice, although the run's few expressions repeat all hour:
  the parse is kept per expression text. moto only reads that tree (the validator works on its own
  deep copy), so one tree serves every request with the same text.
- Every request looks up its handler's method names (inspect.getmembers on the class) and converts
  names from CamelCase (SQS for each queue attribute, at every send): both are pure functions of
  their argument, so their results are kept.
- SQS counts a queue's visible, delayed and in-flight messages (at every send, for the queue's
  attributes, and at every receive) asking the clock again for every message: here the clock is read
  once per count, and each message is judged by moto's own rule against that instant.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from collections.abc import Iterator
from typing import Any

_local = threading.local()


@contextlib.contextmanager
def fast_dynamodb() -> Iterator[None]:
    """Both replacements, while the block runs (moto's own code again afterwards)."""
    with fast_table_queries(), fast_transactions(), fast_attribute_values(), parsed_once(), memoized_helpers():
        yield


@contextlib.contextmanager
def fast_queue_counts() -> Iterator[None]:
    """One clock read per count of a queue's messages (moto's Message.visible and .delayed read it per
    message); the rules are moto's: visible when now > visible_at, delayed while now < delayed_until."""
    import moto.sqs.models as sqs

    names = ("messages", "approximate_number_of_messages_delayed", "approximate_number_of_messages_not_visible")
    originals = {name: sqs.Queue.__dict__[name] for name in names}

    def millis() -> float:
        return float(sqs.__dict__["unix_time_millis"]())  # looked up at each call: tests tie it to a clock

    def messages(self: Any) -> list[Any]:
        now = millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed(self: Any) -> int:
        now = millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible(self: Any) -> int:
        now = millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    for name, replacement in zip(names, (messages, delayed, not_visible), strict=True):
        setattr(sqs.Queue, name, property(replacement))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(sqs.Queue, name, original)


@contextlib.contextmanager
def fast_table_queries() -> Iterator[None]:
    from moto.dynamodb.models.table import Table

    original_query = Table.query
    original_all_items = Table.all_items

    def all_items(self: Any) -> list[Any]:
        only = getattr(_local, "partition", None)
        if only is not None and only[0] is self:
            return list(only[1].values())  # one C-level copy: atomic against another thread's write
        return original_all_items(self)

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name or hash_key is None or not self.range_key_attr:
            return original_query(self, hash_key, *args, **kwargs)
        partition = self.items.get(hash_key, {})  # a defaultdict: get() adds no partition
        _local.partition = (self, partition)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            _local.partition = None

    setattr(Table, "query", query)  # noqa: B010 - restored below
    setattr(Table, "all_items", all_items)  # noqa: B010
    try:
        yield
    finally:
        setattr(Table, "query", original_query)  # noqa: B010
        setattr(Table, "all_items", original_all_items)  # noqa: B010


Backup = list[tuple[Any, Any, Any, Any]]  # (table, hash key, range key, the item before or None)


def _backup(backend: Any, transact_items: list[dict[str, Any]], real_copy: Any) -> Backup:
    """A copy of every item the transaction may write, before it writes (None: the item is not there)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    saved: Backup = []
    for entry in transact_items:
        for op in entry.values():
            table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            if table is None:
                continue
            attrs = op.get("Item") or op.get("Key") or {}
            try:
                hash_key = DynamoType(attrs[table.hash_key_attr])
                range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
            except (KeyError, TypeError, AttributeError):
                continue  # moto refuses this one: it writes nothing
            found = table.items.get(hash_key)
            item = found.get(range_key) if range_key is not None and isinstance(found, dict) else found
            saved.append((table, hash_key, range_key, real_copy.deepcopy(item) if item else None))
    return saved


def _restore(saved: Backup) -> None:
    for table, hash_key, range_key, item in reversed(saved):  # the first backup of a key is its state before
        if range_key is None:
            if item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item
        elif item is None:
            table.items[hash_key].pop(range_key, None)
        else:
            table.items[hash_key][range_key] = item


@contextlib.contextmanager
def fast_transactions() -> Iterator[None]:
    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    backend = models.DynamoDBBackend
    original = backend.transact_write_items
    real_copy = models.__dict__["copy"]  # the module moto's models use as `copy`

    class _Copy:
        """The module's `copy`, except for the table backups of a transaction under way in this thread."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real_copy, name)

        @staticmethod
        def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
            if isinstance(value, Table) and getattr(_local, "transaction", False):
                return value
            return real_copy.deepcopy(value, memo)

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        saved = _backup(self, transact_items, real_copy)
        _local.transaction = True
        try:
            return original(self, transact_items)
        except BaseException:
            _restore(saved)
            raise
        finally:
            _local.transaction = False

    setattr(models, "copy", _Copy())  # noqa: B010 - restored below
    setattr(backend, "transact_write_items", transact_write_items)  # noqa: B010
    try:
        yield
    finally:
        setattr(backend, "transact_write_items", original)  # noqa: B010
        setattr(models, "copy", real_copy)  # noqa: B010


_STRINGS = frozenset(("S", "N"))
_STRING_SETS = frozenset(("SS", "NS"))
_FLAGS = frozenset(("BOOL", "NULL"))
_MEMBERS = _STRINGS | _STRING_SETS | _FLAGS | {"B", "BS", "M", "L"}
_GENERIC = object()  # "not a plain attribute value: serialize it moto's way"


def _attribute_value(encode: Any, value: dict[str, Any]) -> Any:
    """`value` as moto's JSON serializer writes an AttributeValue, or _GENERIC."""
    out: dict[str, Any] = {}
    for key, member in value.items():
        if key not in _MEMBERS:
            return _GENERIC
        if member is None:  # moto leaves out a member that is None
            continue
        written = _member(encode, key, member)
        if written is _GENERIC:
            return _GENERIC
        out[key] = written
    return out


def _member(encode: Any, key: str, member: Any) -> Any:
    """One member of an AttributeValue (S, N, BOOL, NULL, B, or a container), or _GENERIC."""
    if key in _STRINGS:
        return str(member) if member not in ({}, []) else member
    if key in _FLAGS:
        return member
    if key == "B":
        return encode(member)
    return _container(encode, key, member)


def _container(encode: Any, key: str, member: Any) -> Any:
    """An M, L, SS, NS or BS member, or _GENERIC (another shape, or a nested value that is not plain)."""
    if key == "M" and isinstance(member, dict):
        mapped = {name: _nested(encode, item) for name, item in member.items() if item is not None}
        return _GENERIC if any(item is _GENERIC for item in mapped.values()) else mapped
    if key == "L" and isinstance(member, list):
        items = [None if item is None else _nested(encode, item) for item in member]
        return _GENERIC if any(item is _GENERIC for item in items) else items
    if key in _STRING_SETS and isinstance(member, list):
        return [str(item) if item not in (None, {}, []) else item for item in member]
    if key == "BS" and isinstance(member, list):
        return [encode(item) for item in member]
    return _GENERIC


def _nested(encode: Any, item: Any) -> Any:
    return _attribute_value(encode, item) if isinstance(item, dict) else _GENERIC


@contextlib.contextmanager
def fast_attribute_values() -> Iterator[None]:
    from moto.core.serialize import BaseJSONSerializer

    original = BaseJSONSerializer._serialize_type_structure

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue" and isinstance(value, dict):
            written = _attribute_value(self._base64, value)
            if written is not _GENERIC:
                serialized[self.get_serialized_name(shape, key)] = written
                return
        original(self, serialized, value, shape, key)

    setattr(BaseJSONSerializer, "_serialize_type_structure", serialize_structure)  # noqa: B010 - restored below
    try:
        yield
    finally:
        setattr(BaseJSONSerializer, "_serialize_type_structure", original)  # noqa: B010


@contextlib.contextmanager
def parsed_once() -> Iterator[None]:
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    original = UpdateExpressionParser.__dict__["make"]
    make = functools.lru_cache(maxsize=512)(original.__func__.__get__(UpdateExpressionParser))
    setattr(UpdateExpressionParser, "make", staticmethod(make))  # noqa: B010 - restored below
    try:
        yield
    finally:
        setattr(UpdateExpressionParser, "make", original)  # noqa: B010


@contextlib.contextmanager
def memoized_helpers() -> Iterator[None]:
    """moto's pure helpers, cached, in every loaded moto module that imported them (moto loads a
    service's modules at its first request: enter this after the stack's first calls)."""
    import moto.core.utils as utils

    def method_names(clazz: object) -> tuple[str, ...]:  # a tuple: the one caller only asks `in`
        return tuple(utils_originals["method_names_from_class"](clazz))

    utils_originals = {name: getattr(utils, name) for name in ("camelcase_to_underscores", "method_names_from_class")}
    cached = {
        "camelcase_to_underscores": functools.lru_cache(maxsize=8192)(utils_originals["camelcase_to_underscores"]),
        "method_names_from_class": functools.lru_cache(maxsize=1024)(method_names),
    }
    replaced: list[tuple[Any, str, Any]] = []
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "moto" or module_name.startswith("moto.")):
            continue
        for name, original in utils_originals.items():
            if module.__dict__.get(name) is original:
                setattr(module, name, cached[name])
                replaced.append((module, name, original))
    try:
        yield
    finally:
        for module, name, original in replaced:
            setattr(module, name, original)
