"""Small pure helpers and records of the LibreLink Up simulator (``docs/librelinkup-api.md``).

Version comparison, deterministic ids, JSON bytes, the recorded request, the served graph and the reply.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tools.simulators.hostile_bodies import HostileBody


def _version_tuple(v: str) -> tuple[int, ...]:
    parts: list[int] = []
    for comp in v.strip().split("."):
        digits = ""
        for ch in comp:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def compare_versions(a: str, b: str) -> int:
    """-1/0/1 comparing dotted versions numerically per component (``4.9.0 < 4.16.0``) [§15.3]."""
    ta, tb = _version_tuple(a), _version_tuple(b)
    n = max(len(ta), len(tb))
    ta += (0,) * (n - len(ta))
    tb += (0,) * (n - len(tb))
    return (ta > tb) - (ta < tb)


def _mix64(*values: int) -> int:
    """splitmix64-style integer hash (deterministic, fast)."""
    x = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for v in values:
        x = (x ^ (v & mask)) & mask
        x = (x + 0x9E3779B97F4A7C15) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        x ^= x >> 31
    return x


def _det_uuid(*parts: object) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received (``status`` is None when the simulator hung up without replying)."""

    method: str
    region: str
    path: str  # path after /{region}, without the query string
    status: int | None
    headers: dict[str, str]  # lower-case names
    time: float  # virtual time at arrival
    query: str = ""
    body: bytes = b""
    fault: str | None = None  # label of the injected fault that answered, if any


@dataclass(frozen=True)
class ServedGraph:
    """What one successful graph reply (or connections entry) contained."""

    time: float
    patient_id: str
    current_epoch_s: int | None
    history_epoch_s: tuple[int, ...]
    region: str = ""
    source: str = "graph"  # "graph" or "connections"


# --------------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------------


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None
    hang_s: float | None = None
    hostile: HostileBody | None = None  # answered by tools/simulators/hostile_bodies.py instead of `body`


def _json(status: int, obj: Any) -> _Response:
    return _Response(status, _dumps(obj))
