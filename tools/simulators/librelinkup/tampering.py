"""Readings no sensor gives: the LibreLink Up simulator's broken-feed switches (issue 21).

A rule changes glucose items of the next graph replies of one patient: their date moved (a current
reading a year ahead, a history a day old) or their ``ValueInMgPerDl`` (and ``Value``) replaced by
anything at all: 1000, 12, ``float("nan")`` (sent as the bare token ``NaN``), 152.5, ``"152"``, None.
Set them with the simulator's ``future_readings`` and ``absurd_readings`` (faults.py).

The ground truth stays honest: a reply's :class:`ServedGraph` leaves out every item a rule changed, so
"every reading LibreLink Up offered arrived" still means every real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tools.simulators.librelinkup.constants import JsonObj
from tools.simulators.librelinkup.glucose import format_llu_timestamp, parse_llu_timestamp

Where = Literal["current", "history", "all"]
KEEP: Any = object()  # the value stays the real one


@dataclass
class Tamper:
    where: Where
    replies: int | None  # graph replies still to change; None: until clear_faults
    shift_s: int = 0
    value: Any = KEEP


def _shift(text: Any, seconds: int) -> Any:
    if not isinstance(text, str) or not seconds:
        return text
    return format_llu_timestamp(parse_llu_timestamp(text) + seconds)


def _change(item: JsonObj, rule: Tamper) -> None:
    if rule.shift_s:  # both clocks move: the phone's offset from UTC stays what it was
        item["FactoryTimestamp"] = _shift(item.get("FactoryTimestamp"), rule.shift_s)
        item["Timestamp"] = _shift(item.get("Timestamp"), rule.shift_s)
    if rule.value is not KEEP:
        item["ValueInMgPerDl"] = rule.value
        item["Value"] = rule.value


def apply_rules(rules: list[Tamper], data: JsonObj) -> tuple[bool, set[int]]:
    """Change the graph reply ``data`` in place by the rules due; count each rule's reply down.

    Returns (whether the current reading was changed, the indexes of changed history items).
    """
    current_changed, history_changed = False, set[int]()
    connection = data.get("connection")
    items = data.get("graphData")
    for rule in rules:
        if rule.replies is not None and rule.replies <= 0:
            continue
        if rule.where in ("current", "all") and isinstance(connection, dict):
            for key in ("glucoseMeasurement", "glucoseItem"):
                if isinstance(connection.get(key), dict):
                    _change(connection[key], rule)
                    current_changed = True
        if rule.where in ("history", "all") and isinstance(items, list):
            for index, item in enumerate(items):
                _change(item, rule)
                history_changed.add(index)
        if rule.replies is not None:
            rule.replies -= 1
    rules[:] = [r for r in rules if r.replies is None or r.replies > 0]
    return current_changed, history_changed
