"""The Nightscout stand-in's constants: the limits, windows and defaults of ``docs/nightscout-api.md``."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

JsonObj = dict[str, Any]

DEFAULT_API_SECRET = "test-secret-123456"
API3_VERSION = "3.0.3-alpha"
JWT_LIFETIME_S = 28_800  # 8 h [§3.7]
FOUR_DAYS_MS = 345_600_000  # implicit read window [§4]
TWO_DAYS_MS = 172_800_000  # in-memory cache [§4]
ENTRIES_DEFAULT_COUNT = 10
MIN_PASSPHRASE_LENGTH = 12  # [§3.2]
MIN_TIMESTAMP = 946_684_800_000  # v3 [§5.3]
MIN_UTC_OFFSET, MAX_UTC_OFFSET = -1440, 1440
API3_MAX_LIMIT = 1000
MAX_BODY = 50 * 1024 * 1024  # JSON body limit [§2.1]
MAX_HANG_S = 30.0  # upper bound of every real-time hold
MAX_AUTH_DELAY_S = 30.0
NS_UUID_NAMESPACE = uuid.UUID(bytes=b"NightscoutRocks!")  # [§5.4]
SNOOZE_WINDOW_MS = 600_000  # treatmentnotify isCurrent(): under 10 minutes old [§11]
UNAUTHORIZED_BODY: JsonObj = {"status": 401, "message": "Unauthorized", "description": "Invalid/Missing"}

_V3_IMMUTABLE = (
    "identifier", "date", "utcOffset", "eventType", "device", "app",
    "srvCreated", "subject", "srvModified", "modifiedBy", "isValid",
)  # fmt: skip
_V3_COLLECTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    # name: (dedup fallback fields, fallback date field)  [§5.3 step 4]
    "entries": (("date", "type"), "date"),
    "treatments": (("created_at", "eventType"), "created_at"),
}
_V3_RESERVED = ("token", "sort", "sort$desc", "limit", "skip", "fields", "now")
_V3_OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "re")
_V1_INT_FIELDS = ("date", "sgv", "filtered", "unfiltered", "rssi", "noise", "mbg")  # query walker [§4]
_EXTENSIONS = {
    "json": "application/json",
    "csv": "text/csv",
    "txt": "text/plain",
    "tsv": "text/tab-separated-values",
    "html": "text/html",
    "svg": "image/svg+xml",
    "png": "image/png",
    "js": "application/javascript",
}
_ENTRY_FORMATS = ["text/plain", "text/tab-separated-values", "text/csv", "application/json"]
_STATUS_FORMATS = [
    "text/html", "image/png", "image/svg+xml", "application/javascript", "text/plain", "application/json",
]  # fmt: skip
_HEX24 = re.compile(r"^[0-9a-fA-F]{24}$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_REASONS = {
    200: "OK", 201: "Created", 302: "Found", 304: "Not Modified", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 406: "Not Acceptable", 410: "Gone",
    413: "Payload Too Large", 422: "Unprocessable Entity", 500: "Internal Server Error",
}  # fmt: skip


class _Undefined:
    """JavaScript ``undefined`` (a missing key), distinct from ``null`` (None)."""

    def __repr__(self) -> str:
        return "undefined"


_UNDEF = _Undefined()
