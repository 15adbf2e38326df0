"""Turning LibreLink Up responses into domain objects (docs/librelinkup-api.md §4, §5, §6, §7, §10, §11).

Nothing here does I/O. `classify` is the single place that decides what a response means (spec §4.3);
the `parse_*` functions read successful bodies. No message or log line carries a token, password,
Account-Id or patient name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..errors import (
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpBlocked,
    LinkUpLocked,
    LinkUpMaintenance,
    LinkUpMalformedResponse,
    LinkUpMissingHeader,
    LinkUpPatientNotFound,
    LinkUpRateLimited,
    LinkUpServerError,
    LinkUpUnauthorized,
    LinkUpVersionContradicted,
    LinkUpVersionRejected,
)
from ..model import Connection, Graph, Sensor, Ticket
from ..plausibility import SGV_MAX, ImplausibleValue, sgv_value
from ..readings import Reading, Source, direction_for
from .versions import version_key

log = logging.getLogger("linkup_sync")

DEFAULT_LOCKOUT_S = 300
MAX_SGV = SGV_MAX  # a sensor's HI; the plausibility rules live in plausibility.py

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


def parse_graph(patient_id: str, payload: object) -> Graph:
    """Current reading + history from a graph reply. Malformed items are skipped, logged and counted, and so
    are dated items whose value no sensor gives (`implausible_items`; plausibility.py)."""
    data = _data(payload, Mapping)
    skipped = implausible = 0
    connection = data.get("connection")
    if not isinstance(connection, Mapping):
        connection = {}

    current: Reading | None = None
    item = connection.get("glucoseMeasurement")
    if item is None:
        item = connection.get("glucoseItem")
    if item is not None:
        try:
            current = reading_from_item(item, "current")
        except ImplausibleValue as exc:
            implausible += 1
            log.warning("LibreLink Up: dropped the current reading as implausible: %s", exc)
        except ValueError as exc:
            skipped += 1
            log.warning("LibreLink Up: skipped the current reading: %s", exc)

    history: list[Reading] = []
    items = data.get("graphData")
    if items is None:
        items = []
    if not isinstance(items, list):
        log.warning("LibreLink Up: graphData is %s, not a list; no history this run", type(items).__name__)
        items = []
    for index, gitem in enumerate(items):
        try:
            history.append(reading_from_item(gitem, "graph"))
        except ImplausibleValue as exc:
            implausible += 1
            log.warning("LibreLink Up: dropped history item %d as implausible: %s", index, exc)
        except ValueError as exc:
            skipped += 1
            log.warning("LibreLink Up: skipped history item %d: %s", index, exc)
    history.sort(key=lambda r: r.epoch_ms)

    sensor: Sensor | None = None
    active = data.get("activeSensors")
    if isinstance(active, list) and active and isinstance(active[-1], Mapping):
        sensor = _sensor(active[-1].get("sensor"))
    if sensor is None:
        sensor = _sensor(connection.get("sensor"))

    return Graph(
        patient_id=patient_id,
        current=current,
        history=tuple(history),
        sensor=sensor,
        skipped_items=skipped,
        implausible_items=implausible,
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


# --- classification (§4.3) -----------------------------------------------------------------------

_SAFE_TEXT = re.compile(r"^[A-Za-z0-9 _.,:/'-]{1,60}$")


def _safe(value: object) -> str | None:
    """A server-supplied code short and plain enough to put into a message (never a token)."""
    if isinstance(value, str) and _SAFE_TEXT.match(value) and not re.search(r"[A-Za-z0-9_-]{33,}", value):
        return value
    return None


def parse_retry_after(value: str | None) -> int | None:
    """Retry-After in seconds (the HTTP-date form is ignored), capped at one day."""
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()):  # "²".isdigit() is True, int("²") a ValueError
        return None
    return min(int(value), 86400)


def _is_json_type(content_type: str | None) -> bool:
    if not content_type:
        return True  # decide by parsing
    return "json" in content_type.split(";", 1)[0].strip().lower()


def _body_status(body: object) -> int | None:
    if isinstance(body, Mapping):
        status = body.get("status")
        if isinstance(status, int) and not isinstance(status, bool):
            return status
    return None


def _lockout(body: Mapping[str, Any]) -> int | None:
    """data.data.lockout for a 'locked' reply; None when the body is not a lockout."""
    data = body.get("data")
    if not isinstance(data, Mapping):
        return None
    inner = data.get("data")
    lockout = inner.get("lockout") if isinstance(inner, Mapping) else None
    if data.get("message") != "locked" and lockout is None:
        return None
    if isinstance(lockout, bool) or not isinstance(lockout, int | float):
        return DEFAULT_LOCKOUT_S
    if not math.isfinite(lockout) or lockout <= 0:
        return DEFAULT_LOCKOUT_S
    return math.ceil(lockout)


def _edge(status: int, retry_after: int | None, what: str) -> Exception:
    """A reply without a JSON body: an edge (Cloudflare) page, an empty body, a gateway error."""
    if status == 429:
        return LinkUpRateLimited(retry_after)
    if status in (403, 430):
        return LinkUpBlocked(status)
    if status == 911:
        return LinkUpMaintenance()
    if 500 <= status <= 599:
        return LinkUpServerError(status)
    return LinkUpMalformedResponse(f"HTTP {status} with {what}")


def classify(
    status: int,
    content_type: str | None,
    body: bytes,
    *,
    during_login: bool = False,
    version: str = "",
    patient_id: str = "",
    retry_after: str | None = None,
    accept_steps: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Decide what a LibreLink Up response means (spec §4.3).

    A login step whose type is in `accept_steps` is returned (the caller accepts it) instead of raised.

    Returns the parsed JSON object for a body status 0 (success or login redirect); raises the typed
    LinkUpError otherwise. `version` is the version header that was sent (for LinkUpVersionRejected),
    `patient_id` the one asked for (for LinkUpPatientNotFound), `retry_after` the Retry-After header.
    """
    wait = parse_retry_after(retry_after)

    # 1. Not JSON at all (HTML edge page, empty body, truncated JSON).
    parsed: Any = None
    what = ""
    if not body.strip():
        what = "an empty body"
    elif not _is_json_type(content_type):
        shown_type = content_type.split(";", 1)[0].strip()[:40] if content_type else "unknown"
        what = f"a non-JSON body ({shown_type})"
    else:
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            what = "a body that is not valid JSON (truncated?)"
    if what:
        if status == 401 and not during_login:
            raise LinkUpUnauthorized()
        raise _edge(status, wait, what)

    body_status = _body_status(parsed)
    message = parsed.get("message") if isinstance(parsed, Mapping) else None

    # 2. HTTP status first.
    if status == 401:
        if during_login:
            raise LinkUpMalformedResponse("HTTP 401 on login")
        raise LinkUpUnauthorized()
    if status == 400:
        if message == "RequiredHeaderMissing":
            raise LinkUpMissingHeader()
        raise LinkUpMalformedResponse(f"HTTP 400 ({_safe(message) or 'no message'})")
    if status == 403:
        if body_status == 920:
            data = parsed.get("data")
            minimum = _safe(data.get("minimumVersion") if isinstance(data, Mapping) else None)
            wanted, sent = version_key(minimum), version_key(version)
            if wanted is None or (sent is not None and wanted <= sent):
                # No minimum, or one the version sent already meets: not a real refusal (issue #10).
                raise LinkUpVersionContradicted(minimum, version)
            raise LinkUpVersionRejected(minimum, version)
        raise LinkUpBlocked(403)
    if status in (200, 429) and body_status == 429 and isinstance(parsed, Mapping):
        lockout = _lockout(parsed)
        if lockout is not None:
            raise LinkUpLocked(lockout)
    if status == 429:
        raise LinkUpRateLimited(wait)
    if status == 430:
        raise LinkUpBlocked(430)
    if status == 911 or body_status == 911:
        raise LinkUpMaintenance()
    if 500 <= status <= 599:
        raise LinkUpServerError(status)
    if status != 200:
        raise LinkUpMalformedResponse(f"HTTP {status}")

    # 3. HTTP 200: the body status decides.
    if not isinstance(parsed, dict):
        raise LinkUpMalformedResponse(f"the reply is {type(parsed).__name__}, not a JSON object")
    if body_status == 0:
        return parsed
    error = parsed.get("error")
    error_message = error.get("message") if isinstance(error, Mapping) else None
    if body_status == 2:
        if during_login:
            raise LinkUpBadCredentials()
        raise LinkUpUnauthorized()
    if body_status == 4:
        data = parsed.get("data")
        step = data.get("step") if isinstance(data, Mapping) else None
        if isinstance(step, Mapping):
            step_type = _safe(step.get("type") or step.get("componentName")) or "unknown"
            if step_type in accept_steps:
                return parsed
            raise LinkUpActionRequired(step_type)
        if error_message == "couldNotLoadPatient":
            raise LinkUpPatientNotFound(patient_id, [])
    if body_status == 429:
        raise LinkUpRateLimited(wait)
    shown = "missing" if body_status is None else str(body_status)
    detail = f"body status {shown}"
    if _safe(error_message):
        detail += f", message {error_message}"
    raise LinkUpMalformedResponse(detail)
