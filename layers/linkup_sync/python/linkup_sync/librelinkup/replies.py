"""What a LibreLink Up reply means (docs/librelinkup-api.md §4.3): a JSON object to read, or a typed error.

Nothing here does I/O. `classify` is the single place that decides what a response means; it checks, in
order, that the body is JSON at all, the HTTP status, then the body status (the three steps of §4.3).
No message carries a token, password, Account-Id or patient name: server text passes `_safe` first.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
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
from .versions import version_key

DEFAULT_LOCKOUT_S = 300

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


# --- step 1: is the body JSON at all ---------------------------------------------------------------


def _read_json(content_type: str | None, body: bytes) -> tuple[Any, str]:
    """(the parsed body, "") or (None, what the body is instead: empty, not JSON, truncated)."""
    if not body.strip():
        return None, "an empty body"
    if not _is_json_type(content_type):
        shown_type = content_type.split(";", 1)[0].strip()[:40] if content_type else "unknown"
        return None, f"a non-JSON body ({shown_type})"
    try:
        return json.loads(body), ""
    except (ValueError, UnicodeDecodeError):
        return None, "a body that is not valid JSON (truncated?)"


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


def _not_json(status: int, retry_after: int | None, what: str, *, during_login: bool) -> Exception:
    if status == 401 and not during_login:
        return LinkUpUnauthorized()
    return _edge(status, retry_after, what)


# --- step 2: the HTTP status ---------------------------------------------------------------------


def _bad_request(parsed: Any) -> Exception:
    message = parsed.get("message") if isinstance(parsed, Mapping) else None
    if message == "RequiredHeaderMissing":
        return LinkUpMissingHeader()
    return LinkUpMalformedResponse(f"HTTP 400 ({_safe(message) or 'no message'})")


def _forbidden(parsed: Any, body_status: int | None, version: str) -> Exception:
    if body_status != 920:
        return LinkUpBlocked(403)
    data = parsed.get("data")
    minimum = _safe(data.get("minimumVersion") if isinstance(data, Mapping) else None)
    wanted, sent = version_key(minimum), version_key(version)
    if wanted is None or (sent is not None and wanted <= sent):
        # No minimum, or one the version sent already meets: not a real refusal (issue #10).
        return LinkUpVersionContradicted(minimum, version)
    return LinkUpVersionRejected(minimum, version)


def _raise_if_locked(status: int, parsed: Any, body_status: int | None) -> None:
    if status in (200, 429) and body_status == 429 and isinstance(parsed, Mapping):
        lockout = _lockout(parsed)
        if lockout is not None:
            raise LinkUpLocked(lockout)


def _raise_for_http_status(
    status: int, parsed: Any, body_status: int | None, *, during_login: bool, version: str, wait: int | None
) -> None:
    """Every HTTP status but 200 is an error; which one, the status says first (a lockout before a 429)."""
    if status == 401:
        raise LinkUpMalformedResponse("HTTP 401 on login") if during_login else LinkUpUnauthorized()
    if status == 400:
        raise _bad_request(parsed)
    if status == 403:
        raise _forbidden(parsed, body_status, version)
    _raise_if_locked(status, parsed, body_status)
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


# --- step 3: HTTP 200, the body status decides -------------------------------------------------------


def _step_accepted(parsed: Mapping[str, Any], error_message: object, patient_id: str, accept: frozenset[str]) -> bool:
    """Body status 4: True for a step the caller accepts; raises for any other step or an unknown patient;
    False when the body is neither (an unexpected reply)."""
    data = parsed.get("data")
    step = data.get("step") if isinstance(data, Mapping) else None
    if isinstance(step, Mapping):
        step_type = _safe(step.get("type") or step.get("componentName")) or "unknown"
        if step_type in accept:
            return True
        raise LinkUpActionRequired(step_type)
    if error_message == "couldNotLoadPatient":
        raise LinkUpPatientNotFound(patient_id, [])
    return False


def _by_body_status(
    parsed: Any,
    body_status: int | None,
    *,
    during_login: bool,
    patient_id: str,
    wait: int | None,
    accept_steps: frozenset[str],
) -> dict[str, Any]:
    if not isinstance(parsed, dict):
        raise LinkUpMalformedResponse(f"the reply is {type(parsed).__name__}, not a JSON object")
    if body_status == 0:
        return parsed
    error = parsed.get("error")
    error_message = error.get("message") if isinstance(error, Mapping) else None
    if body_status == 2:
        raise LinkUpBadCredentials() if during_login else LinkUpUnauthorized()
    if body_status == 4 and _step_accepted(parsed, error_message, patient_id, accept_steps):
        return parsed
    if body_status == 429:
        raise LinkUpRateLimited(wait)
    shown = "missing" if body_status is None else str(body_status)
    detail = f"body status {shown}"
    if _safe(error_message):
        detail += f", message {error_message}"
    raise LinkUpMalformedResponse(detail)


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
    parsed, what = _read_json(content_type, body)
    if what:
        raise _not_json(status, wait, what, during_login=during_login)
    body_status = _body_status(parsed)
    _raise_for_http_status(status, parsed, body_status, during_login=during_login, version=version, wait=wait)
    return _by_body_status(
        parsed,
        body_status,
        during_login=during_login,
        patient_id=patient_id,
        wait=wait,
        accept_steps=accept_steps,
    )
