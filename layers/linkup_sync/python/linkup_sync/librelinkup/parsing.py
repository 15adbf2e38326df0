"""Turning LibreLink Up responses into domain objects (docs/librelinkup-api.md §4, §5, §6, §7, §10, §11).

Nothing here does I/O. The `parse_*` functions read successful bodies; what a reply means (success or
which error) is decided before, by `replies.classify` (spec §4.3). No message or log line carries a token, password,
Account-Id or patient name.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import LinkUpMalformedResponse
from ..model import Connection, Graph, Sensor, Ticket
from ..plausibility import ImplausibleValue, sgv_value
from ..readings import Reading, Source, direction_for

log = logging.getLogger("linkup_sync")


# --- timestamps (§11) ----------------------------------------------------------------------------

_TS = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) (AM|PM)$")


def parse_factory_timestamp(s: object) -> int:
    """'M/D/YYYY h:mm:ss AM|PM' read as UTC -> Unix seconds. Locale-free; anything else is a ValueError."""
    if not isinstance(s, str):
        raise ValueError("timestamp is not a string")
    m = _TS.match(s)
    if m is None:
        raise ValueError(f"timestamp {s[:40]!r} is not in the form M/D/YYYY h:mm:ss AM|PM")
    month, day, year, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not 1 <= hour <= 12:
        raise ValueError(f"timestamp {s!r} has an hour outside 1..12")
    hour = hour % 12 + (12 if m.group(7) == "PM" else 0)
    try:
        dt = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise ValueError(f"timestamp {s!r} is not a valid date or time") from None
    return int(dt.timestamp())


# --- readings (§10) ------------------------------------------------------------------------------


def reading_from_item(item: object, source: Source) -> Reading:
    """One GlucoseItem -> Reading. Raises ValueError when the item cannot be used: ImplausibleValue (a
    ValueError) when it is a dated item whose value no sensor gives."""
    if not isinstance(item, Mapping):
        raise ValueError(f"glucose item is {type(item).__name__}, not an object")
    epoch_s = parse_factory_timestamp(item.get("FactoryTimestamp"))
    sgv = sgv_value(item.get("ValueInMgPerDl"))
    offset: int | None = None
    try:
        local_s = parse_factory_timestamp(item.get("Timestamp"))
    except ValueError:
        pass
    else:
        offset = round((local_s - epoch_s) / 60)
    return Reading(
        epoch_ms=epoch_s * 1000,
        sgv=sgv,
        direction=direction_for(item.get("TrendArrow")),
        source=source,
        utc_offset_min=offset,
    )


def _sensor(obj: object) -> Sensor | None:
    if not isinstance(obj, Mapping):
        return None
    sn, a = obj.get("sn"), obj.get("a")
    if not isinstance(sn, str) or not sn or isinstance(a, bool) or not isinstance(a, int) or a <= 0:
        return None
    return Sensor(serial=sn, activated_at=a)


def _data(payload: object, kind: type) -> Any:
    if not isinstance(payload, Mapping):
        raise LinkUpMalformedResponse(f"the reply is {type(payload).__name__}, not a JSON object")
    data = payload.get("data")
    if not isinstance(data, kind):
        got = "missing" if data is None else type(data).__name__
        expected = "a list" if kind is list else "an object"
        raise LinkUpMalformedResponse(f"'data' is {got}, expected {expected}")
    return data


# --- graph (§7) ----------------------------------------------------------------------------------


@dataclass
class _Dropped:
    """What a graph reply had that could not be used: counted for the run's report."""

    skipped: int = 0  # malformed items
    implausible: int = 0  # dated items whose value no sensor gives


def _current_reading(connection: Mapping[str, Any], dropped: _Dropped) -> Reading | None:
    item = connection.get("glucoseMeasurement")
    if item is None:
        item = connection.get("glucoseItem")
    if item is None:
        return None
    try:
        return reading_from_item(item, "current")
    except ImplausibleValue as exc:
        dropped.implausible += 1
        log.warning("LibreLink Up: dropped the current reading as implausible: %s", exc)
    except ValueError as exc:
        dropped.skipped += 1
        log.warning("LibreLink Up: skipped the current reading: %s", exc)
    return None


def _history(items: object, dropped: _Dropped) -> tuple[Reading, ...]:
    """graphData's readings, oldest first."""
    if items is None:
        items = []
    if not isinstance(items, list):
        log.warning("LibreLink Up: graphData is %s, not a list; no history this run", type(items).__name__)
        items = []
    history: list[Reading] = []
    for index, gitem in enumerate(items):
        try:
            history.append(reading_from_item(gitem, "graph"))
        except ImplausibleValue as exc:
            dropped.implausible += 1
            log.warning("LibreLink Up: dropped history item %d as implausible: %s", index, exc)
        except ValueError as exc:
            dropped.skipped += 1
            log.warning("LibreLink Up: skipped history item %d: %s", index, exc)
    history.sort(key=lambda r: r.epoch_ms)
    return tuple(history)


def _graph_sensor(data: Mapping[str, Any], connection: Mapping[str, Any]) -> Sensor | None:
    """The newest active sensor, else the connection's."""
    sensor: Sensor | None = None
    active = data.get("activeSensors")
    if isinstance(active, list) and active and isinstance(active[-1], Mapping):
        sensor = _sensor(active[-1].get("sensor"))
    if sensor is None:
        sensor = _sensor(connection.get("sensor"))
    return sensor


def parse_graph(patient_id: str, payload: object) -> Graph:
    """Current reading + history from a graph reply. Malformed items are skipped, logged and counted, and so
    are dated items whose value no sensor gives (`implausible_items`; plausibility.py)."""
    data = _data(payload, Mapping)
    connection = data.get("connection")
    if not isinstance(connection, Mapping):
        connection = {}
    dropped = _Dropped()
    current = _current_reading(connection, dropped)
    history = _history(data.get("graphData"), dropped)
    return Graph(
        patient_id=patient_id,
        current=current,
        history=history,
        sensor=_graph_sensor(data, connection),
        skipped_items=dropped.skipped,
        implausible_items=dropped.implausible,
        initials=_initial(connection.get("firstName")) + _initial(connection.get("lastName")),
    )


# --- connections (§6) ----------------------------------------------------------------------------


def _initial(name: object) -> str:
    return name.strip()[:1].upper() if isinstance(name, str) else ""


def parse_connections(payload: object) -> list[Connection]:
    """Every followed patient, in the server's order. [] when the follower follows nobody."""
    data = _data(payload, list)
    result: list[Connection] = []
    for index, item in enumerate(data):
        pid = item.get("patientId") if isinstance(item, Mapping) else None
        if not isinstance(item, Mapping) or not isinstance(pid, str) or not pid.strip():
            log.warning("LibreLink Up: skipped connection %d without a patientId", index)
            continue
        result.append(
            Connection(
                patient_id=pid.strip(),
                initials=_initial(item.get("firstName")) + _initial(item.get("lastName")),
                sensor=_sensor(item.get("sensor")),
            )
        )
    return result


# --- login (§5) ----------------------------------------------------------------------------------


def account_id_for(user_id: str) -> str:
    """The Account-Id header: lower-case hex SHA-256 of user.id exactly as received."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def login_redirect(payload: object) -> object | None:
    """The raw `data.region` of a redirect reply, or None when the reply is not a redirect."""
    if isinstance(payload, Mapping):
        data = payload.get("data")
        if isinstance(data, Mapping) and data.get("redirect") is True:
            region: object = data.get("region", "")
            return region
    return None


def login_step(payload: object) -> tuple[str, str] | None:
    """(step type, step token) of a status-4 login reply that asks for a document to be accepted."""
    if not isinstance(payload, Mapping) or payload.get("status") != 4:
        return None
    data = payload.get("data")
    if not isinstance(data, Mapping):
        return None
    step, ticket = data.get("step"), data.get("authTicket")
    step_type = step.get("type") if isinstance(step, Mapping) else None
    token = ticket.get("token") if isinstance(ticket, Mapping) else None
    if isinstance(step_type, str) and isinstance(token, str) and token:
        return step_type, token
    raise LinkUpMalformedResponse("the login reply asks for a step but carries no step ticket")


def parse_login(payload: object, region: str) -> Ticket:
    """A Ticket from a successful (status 0) login reply."""
    data = _data(payload, Mapping)
    ticket = data.get("authTicket")
    user = data.get("user")
    token = ticket.get("token") if isinstance(ticket, Mapping) else None
    expires = ticket.get("expires") if isinstance(ticket, Mapping) else None
    user_id = user.get("id") if isinstance(user, Mapping) else None
    if not isinstance(token, str) or not token:
        raise LinkUpMalformedResponse("the login reply has no authTicket token")
    if isinstance(expires, float) and math.isfinite(expires):
        expires = int(expires)
    if isinstance(expires, bool) or not isinstance(expires, int) or expires <= 0:
        raise LinkUpMalformedResponse("the login reply has no valid authTicket expiry")
    if not isinstance(user_id, str) or not user_id:
        raise LinkUpMalformedResponse("the login reply has no user id")
    return Ticket(token=token, expires=expires, user_id=user_id, account_id=account_id_for(user_id), region=region)
